"""Figures of the Ross & Doshi-Velez (AAAI 2018) reproduction (matplotlib, headless, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from underfire.plotting import new_figure, save_figure

__all__ = ["make_figures"]

_LABELS = {
    "normal": "Normal",
    "distilled": "Distilled",
    "adv-trained": "Adv. trained",
    "gradreg": "Grad. reg.",
    "both": "Grad. reg. + adv.",
    "certainty-insensitive": "Cert.-insens.",
    "insensitive-dbl": "Insens. (dbl-bp)",
}


def _label(m: str) -> str:
    return _LABELS.get(m, m)


def transfer_figure(
    path: Path, acc: dict[str, dict[str, list[float]]], eps: list[float], attack: str
) -> Path:
    """One panel per source model, accuracy vs ε of every victim (paper Figs. 1 and 3)."""
    sources = list(acc)
    cols = min(3, len(sources))
    rows = (len(sources) + cols - 1) // cols
    fig = new_figure(4.2 * cols, 3.2 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for ax, s in zip(axes, sources, strict=False):
        for v in acc[s]:
            ax.plot(
                eps,
                acc[s][v],
                marker="o",
                ms=3,
                lw=2.5 if v == s else 1.2,
                label=_label(v) + (" (white-box)" if v == s else ""),
            )
        ax.set_title(f"{attack} examples from {_label(s)}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(sources) :]:
        ax.axis("off")
    for ax in axes[(rows - 1) * cols :]:
        ax.set_xlabel("ε")
    for ax in axes[::cols]:
        ax.set_ylabel("accuracy")
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def blackbox_figure(path: Path, bb: dict[str, dict[str, Any]], eps: list[float]) -> Path:
    fig = new_figure(9, 3.5)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for m, v in bb.items():
        ax1.plot(eps, v["white_box"], marker="o", ms=3, label=_label(m))
        ax2.plot(eps, v["black_box"], marker="o", ms=3, label=_label(m))
    ax1.set(title="white-box FGSM", xlabel="ε", ylabel="accuracy", ylim=(-0.02, 1.02))
    ax2.set(title="black-box FGSM (substitute)", xlabel="ε")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    return save_figure(fig, path)


def _log_bins(arrays: list[np.ndarray], n: int = 40) -> np.ndarray:
    vals = np.concatenate([a[a > 0] for a in arrays]) if arrays else np.array([])
    lo, hi = (vals.min(), vals.max()) if vals.size else (1e-8, 1.0)
    lo = max(lo, 1e-30)
    return np.logspace(np.log10(lo), np.log10(max(hi, lo * 10)), n)


def gradient_figure(path: Path, raw: dict[str, dict[str, list[float]]]) -> Path:
    """Histograms (log-spaced, common bins for all models) of ‖∇FGSM loss‖, ‖∇TGSM loss‖ and of
    −log p of the predicted and the other classes (paper Fig. 4)."""
    from matplotlib.ticker import NullFormatter

    models = list(raw)
    arr = {m: {k: np.asarray(v, dtype=np.float64) for k, v in raw[m].items()} for m in models}
    gbins = _log_bins([arr[m][k] for m in models for k in ("fgsm_norm", "tgsm_norm")])
    pbins = _log_bins(
        [-arr[m][k] for m in models for k in ("log_prob_other", "log_prob_predicted")]
    )
    fig = new_figure(2.8 * len(models), 5.5)
    axes = fig.subplots(2, len(models), squeeze=False, sharex="row")
    for j, m in enumerate(models):
        f, t = arr[m]["fgsm_norm"], arr[m]["tgsm_norm"]
        ax = axes[0, j]
        ax.hist(np.clip(f, gbins[0], None), bins=gbins, alpha=0.6, label="FGSM loss")
        ax.hist(np.clip(t, gbins[0], None), bins=gbins, alpha=0.6, label="TGSM loss")
        ax.set_xscale("log")
        ax.set_title(_label(m), fontsize=9)
        ax.set_xlabel("‖∇ₓ loss‖₂", fontsize=8)
        zeros = int((f == 0).sum())
        if zeros:
            ax.text(0.02, 0.9, f"{zeros} FGSM grads = 0", transform=ax.transAxes, fontsize=7)
        ax2 = axes[1, j]
        other, pred = -arr[m]["log_prob_other"], -arr[m]["log_prob_predicted"]
        ax2.hist(np.clip(other, pbins[0], None), bins=pbins, alpha=0.6, label="other classes")
        ax2.hist(np.clip(pred, pbins[0], None), bins=pbins, alpha=0.6, label="predicted class")
        ax2.set_xscale("log")
        ax2.set_xlabel("−log p", fontsize=8)
        for a in (ax, ax2):
            a.xaxis.set_minor_formatter(NullFormatter())
            a.tick_params(labelsize=7)
        if j == 0:
            ax.set_ylabel("count")
            ax.legend(fontsize=7)
            ax2.set_ylabel("count")
            ax2.legend(fontsize=7)
    return save_figure(fig, path)


def jsma_figure(path: Path, grid: dict[str, Any], classes: tuple[str, ...], title: str) -> Path:
    images = grid["images"].detach().cpu()
    n, k = images.shape[:2]
    fig = new_figure(1.1 * k, 1.3 * n + 0.4)
    axes = np.atleast_2d(fig.subplots(n, k))
    for i in range(n):
        for t in range(k):
            ax = axes[i, t]
            img = images[i, t]
            ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            pred = int(grid["predicted"][i, t])
            ok = bool(grid["success"][i, t])
            ax.set_title(
                f"→{classes[t]}: {classes[pred]}", fontsize=7, color="green" if ok else "red"
            )
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def saliency_figure(
    path: Path, saliency: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> Path:
    models = list(saliency)
    n = x.shape[0]
    fig = new_figure(1.5 * (len(models) + 1), 1.5 * n + 0.3)
    axes = np.atleast_2d(fig.subplots(n, len(models) + 1))
    for i in range(n):
        axes[i, 0].imshow(
            x[i].detach().cpu().permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1
        )
        axes[i, 0].axis("off")
        if i == 0:
            axes[i, 0].set_title("input", fontsize=8)
        for j, m in enumerate(models):
            g = saliency[m][i].detach().cpu().sum(0).numpy()
            lim = float(np.abs(g).max()) or 1.0
            ax = axes[i, j + 1]
            ax.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.axis("off")
            if i == 0:
                ax.set_title(_label(m), fontsize=8)
    return save_figure(fig, path)


def make_figures(
    folder: Path,
    results: dict[str, Any],
    raw_gradients: dict[str, dict[str, list[float]]],
    saliency: dict[str, torch.Tensor],
    xs: torch.Tensor,
    ys: torch.Tensor,
    grids: dict[str, dict[str, Any]],
    classes: tuple[str, ...],
) -> dict[str, Path]:
    """Write every figure of the reproduction; returns name → path."""
    eps = list(results["config"]["eps"])
    paths = {
        "fgsm": transfer_figure(
            folder / "fig1_fgsm_transfer.png", results["fgsm"]["accuracy"], eps, "FGSM"
        ),
        "tgsm": transfer_figure(
            folder / "fig3_tgsm_transfer.png", results["tgsm"]["accuracy"], eps, "TGSM"
        ),
        "itgsm": transfer_figure(
            folder / "fig3b_itgsm_transfer.png", results["itgsm"]["accuracy"], eps, "Iterated TGSM"
        ),
        "gradients": gradient_figure(folder / "fig4_gradient_norms.png", raw_gradients),
        "saliency": saliency_figure(folder / "saliency.png", saliency, xs, ys),
    }
    paths["blackbox"] = blackbox_figure(folder / "fig2_blackbox.png", results["blackbox"], eps)
    for m, grid in grids.items():
        paths[f"jsma_{m}"] = jsma_figure(
            folder / f"fig5_jsma_{m}.png", grid, classes, f"JSMA against {_label(m)}"
        )
    return paths
