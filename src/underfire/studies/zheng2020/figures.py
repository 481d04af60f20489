"""Figures of the Zheng et al. (2020) reproduction (matplotlib, headless, PNG)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from underfire.plotting import new_figure, save_figure
from underfire.studies.zheng2020.claims import robust_score

__all__ = [
    "diagnosis_figure",
    "interpretgan_figure",
    "make_figures",
    "robust_figure",
    "seed_figure",
    "short_layer",
]

COLORS = {"max": "tab:red", "avg": "tab:blue"}
LABELS = {"max": "max pooling", "avg": "average pooling"}


def robust_figure(path: Path, results: dict[str, Any]) -> Path:
    """Accuracy vs ε under FGSM and PGD: mean over seeds (thick), each seed (thin), and the
    min–max band over seeds, per pooling variant."""
    cfg = results["config"]
    eps, seeds = cfg["eps"], cfg["seeds"]
    scale, unit = (255.0, "ε·255") if cfg["dataset"] == "cifar10" else (1.0, "ε")
    xs = [e * scale for e in eps]
    fig = new_figure(9, 3.6)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, attack in zip(axes, ("fgsm", "pgd"), strict=True):
        curves = results["comparison"]["curves"][attack]
        for pool in ("max", "avg"):
            c = curves[pool]
            ax.fill_between(xs, c["min"], c["max"], color=COLORS[pool], alpha=0.18, lw=0)
            for s in seeds:
                ax.plot(
                    xs,
                    results["models"][f"{pool}-seed{s}"][attack],
                    color=COLORS[pool],
                    lw=0.6,
                    alpha=0.6,
                )
            ax.plot(
                xs,
                c["mean"],
                color=COLORS[pool],
                lw=2.2,
                marker="o",
                ms=3,
                label=f"{LABELS[pool]} (mean of {len(seeds)} seeds)",
            )
        title = "FGSM" if attack == "fgsm" else f"PGD ({cfg['pgd_steps']} steps)"
        ax.set(title=f"white-box {title}, L∞", xlabel=unit, ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"accuracy ({results['n_eval']} test images)")
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def seed_figure(path: Path, results: dict[str, Any]) -> Path:
    """Per seed, the paired scores of the two variants: clean accuracy, and mean accuracy over
    ε > 0 under FGSM and PGD; a line joins the max and the avg model of the same seed."""
    cfg = results["config"]
    eps, seeds = cfg["eps"], cfg["seeds"]
    panels = [
        ("clean accuracy", lambda r: r["clean"], "clean"),
        ("FGSM: mean acc. over ε>0", lambda r: robust_score(r["fgsm"], eps), "fgsm"),
        ("PGD: mean acc. over ε>0", lambda r: robust_score(r["pgd"], eps), "pgd"),
    ]
    fig = new_figure(9, 3.2)
    axes = fig.subplots(1, 3)
    for ax, (title, fn, key) in zip(axes, panels, strict=True):
        for s in seeds:
            a = fn(results["models"][f"max-seed{s}"])
            b = fn(results["models"][f"avg-seed{s}"])
            ax.plot([0, 1], [a, b], color="0.6", lw=0.8, zorder=1)
            ax.scatter([0], [a], color=COLORS["max"], zorder=2, s=18)
            ax.scatter([1], [b], color=COLORS["avg"], zorder=2, s=18)
        winner = results["comparison"][key]["winner"]
        ax.set_title(f"{title}\nverdict: {winner}", fontsize=9)
        ax.set_xticks([0, 1], ["max", "avg"])
        ax.set_xlim(-0.4, 1.4)
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(labelsize=8)
    return save_figure(fig, path)


def short_layer(name: str) -> str:
    """``net.features.pool1`` → ``pool1``; ``net.classifier.3`` → ``fc (classifier.3)``."""
    parts = name.split(".")
    if parts[-1].isdigit():
        return f"{parts[-2]}.{parts[-1]}" if parts[-2] != "classifier" else "fc hidden"
    return parts[-1]


_PANELS = (
    ("information_loss", "information loss (FVU)"),
    ("amplification", "amplification ‖Δh‖/‖h‖"),
    ("growth", "growth Aₗ/Aₗ₋₁"),
    ("restored_topk", "restored by top-10% patch"),
)


def diagnosis_figure(path: Path, results: dict[str, Any]) -> Path:
    """Per layer (input side left), mean ± std over seeds of information loss,
    amplification, its growth and the restoration by partial patching, per variant."""
    summary = results["diagnosis"]["summary"]
    layers = [short_layer(n) for n in summary["layers"]]
    xs = list(range(len(layers)))
    fig = new_figure(3.2 * len(_PANELS), 3.4)
    axes = fig.subplots(1, len(_PANELS))
    for ax, (measure, title) in zip(axes, _PANELS, strict=True):
        for k, pool in enumerate(("max", "avg")):
            rows = summary["stats"][pool][measure]
            pts = [
                (x + (k - 0.5) * 0.12, r["mean"], r["std"])
                for x, r in zip(xs, rows, strict=True)
                if r
            ]
            if not pts:
                continue
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[p[2] for p in pts],
                color=COLORS[pool],
                marker="o",
                ms=4,
                capsize=3,
                lw=1.5,
                label=LABELS[pool],
            )
        if measure == "growth":
            ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(xs, layers, rotation=35, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    eps = results["config"]["diag_eps"]
    unit = f"{round(eps * 255)}/255" if results["config"]["dataset"] == "cifar10" else f"{eps:g}"
    fig.suptitle(
        f"Per-layer diagnosis, PGD ε = {unit} (mean ± std over seeds)", fontsize=10, y=1.04
    )
    return save_figure(fig, path)


def _show(ax: Any, img: Any) -> None:
    a = img.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
    ax.imshow(a.squeeze(-1) if a.shape[-1] == 1 else a, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def interpretgan_figure(
    path: Path, pictures: dict[str, Any], classes: Sequence[str], title: str
) -> Path:
    """Rows: each image clean, then its PGD version; columns: the input, then the image the
    InterpretGAN generates from each layer's features, titled with the classifier's label of
    it (green: the true class, red: another class)."""
    layers = list(pictures["clean"])
    k = pictures["x"].shape[0]
    cols = 1 + len(layers)
    height = 1.45 * 2 * k + 0.5
    fig = new_figure(1.35 * cols, height)
    axes = fig.subplots(2 * k, cols, squeeze=False)
    fig.subplots_adjust(top=1 - 0.55 / height, hspace=0.35)  # a tall grid: keep the title close
    for i in range(k):
        y = int(pictures["y"][i])
        for row, kind, src in ((2 * i, "clean", "x"), (2 * i + 1, "adv", "x_adv")):
            ax = axes[row][0]
            _show(ax, pictures[src][i])
            label = y if kind == "clean" else int(pictures["pred_adv"][i])
            ax.set_title(
                f"{'input' if kind == 'clean' else 'PGD'}: {classes[label]}",
                fontsize=7,
                color="green" if label == y else "red",
            )
            for j, layer in enumerate(layers, start=1):
                ax = axes[row][j]
                _show(ax, pictures[kind][layer][i])
                lab = int(pictures[f"{kind}_label"][layer][i])
                ax.set_title(
                    f"{short_layer(layer)}: {classes[lab]}",
                    fontsize=7,
                    color="green" if lab == y else "red",
                )
    fig.suptitle(title, fontsize=9, y=1 - 0.1 / height)
    return save_figure(fig, path)


def make_figures(
    figure_path: Callable[[str], Path],
    results: dict[str, Any],
    gan_pictures: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write every figure of the reproduction at ``figure_path(file name)`` (the run's
    :meth:`~underfire.studies.StudyRun.figure_path`); returns name → path."""
    paths = {
        "robust": robust_figure(figure_path("robust_accuracy.png"), results),
        "seeds": seed_figure(figure_path("seed_scores.png"), results),
        "diagnosis": diagnosis_figure(figure_path("layer_diagnosis.png"), results),
    }
    for name, pictures in (gan_pictures or {}).items():
        pool = name.split("-", 1)[0]
        paths[f"interpretgan_{name}"] = interpretgan_figure(
            figure_path(f"interpretgan_{name}.png"),
            pictures,
            classes or [str(c) for c in range(10)],
            f"InterpretGAN, {LABELS[pool]} ({name}): clean (odd rows) vs PGD (even rows)",
        )
    return paths
