"""The audit's figures: robust accuracy vs ε, and maps benign vs attacked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from underfire.plotting import new_figure, prediction_titles, save_figure

__all__ = ["map_figure", "robust_figure"]


def robust_figure(eps: list[float], curves: dict[str, list[float]], path: Path) -> Path:
    """Accuracy vs ε per attack; the worst case wide and pale under the attacks' lines."""
    fig = new_figure(6, 3.6)
    ax = fig.subplots()
    markers = iter("os^Dvp<>h*")
    for label, acc in curves.items():
        if label == "worst case":
            # wide and pale, drawn first: an attack that is the worst case stays visible on it
            ax.plot(eps, acc, "k-", lw=5, alpha=0.3, zorder=1, label=label)
        else:
            ls = "--" if "transfer" in label else "-"
            ax.plot(eps, acc, ls=ls, marker=next(markers, "o"), ms=5, zorder=2, label=label)
    ax.set(xlabel="ε (L∞)", ylabel="accuracy", ylim=(-0.02, 1.02), xlim=(0, max(eps) * 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def map_figure(part: dict[str, Any], name: str, figures: Path) -> Path:
    """Rows: the images (titled pred (true), red when wrong), their benign maps, then the maps
    of each attack's examples titled the same way; one colour bar."""
    x, y = torch.tensor(part["x"]), torch.tensor(part["y"])
    rows: list[tuple[str, torch.Tensor, torch.Tensor | None]] = [
        ("benign map", torch.tensor(part["benign"]), torch.tensor(part["pred"]))
    ]
    for label, a in part["attacks"].items():
        rows.append((f"{label} map", torch.tensor(a["maps"]), torch.tensor(a["pred"])))
    k = x.shape[0]
    fig = new_figure(1.45 * k + 1.2, 1.6 * (len(rows) + 1))
    axes = fig.subplots(len(rows) + 1, k, squeeze=False)
    shown = None
    for i in range(k):
        img = x[i].permute(1, 2, 0).numpy()
        axes[0][i].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    titles, colors = prediction_titles(torch.tensor(part["pred"]), y)
    for i in range(k):
        axes[0][i].set_title(titles[i], fontsize=8, color=colors[i])
    axes[0][0].set_ylabel("image", fontsize=9)
    for r, (label, maps, pred) in enumerate(rows, start=1):
        t, c = prediction_titles(pred, y) if pred is not None else ([""] * k, ["black"] * k)
        for i in range(k):
            shown = axes[r][i].imshow(maps[i, 0].numpy(), cmap="jet", vmin=0, vmax=1)
            if r > 1:
                axes[r][i].set_title(t[i], fontsize=8, color=c[i])
        axes[r][0].set_ylabel(label, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="relevance")
    return save_figure(fig, figures / f"maps_{name}.png")
