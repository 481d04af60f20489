"""Figures of the ADV² reproduction: the paper's bar charts (PGD vs ADV² per interpreter),
sample images with their maps, the interpreter transfer table and the countermeasures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from underfire.plotting import save_figure
from underfire.studies.zhang2020.claims import transfer_table

__all__ = ["make_figures"]

PGD_COLOR, ADV2_COLOR, NOISE_COLOR = "#9e9e9e", "#d62728", "#1f77b4"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _image(ax: Any, x: torch.Tensor) -> None:
    x = x.detach().cpu().float()
    if x.shape[0] == 1:
        ax.imshow(x[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _map(ax: Any, m: torch.Tensor) -> None:
    ax.imshow(m.detach().cpu().float()[0].numpy(), cmap="jet", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def metrics_figure(path: Path, results: dict[str, Any]) -> Path:
    """Rows: classifiers; columns: success, target confidence, L1 and IoU; PGD vs ADV² bars."""
    plt = _plt()
    clfs = list(results["classifiers"])
    metrics = [
        ("success", "attack success"),
        ("confidence", "target confidence"),
        ("l1", "L1(benign, adv. map) ↓ for stealth"),
        ("iou", "top-k IoU ↑ for stealth"),
    ]
    fig, axes = plt.subplots(len(clfs), 4, figsize=(16, 3.2 * len(clfs)), squeeze=False)
    for i, c in enumerate(clfs):
        r = results["classifiers"][c]
        names = list(r["pgd"]["maps"])
        xs = range(len(names))
        for j, (key, title) in enumerate(metrics):
            ax = axes[i][j]
            if key in ("success", "confidence"):
                pgd = [r["pgd"][key]] * len(names)
                adv = [r["adv2"][k][key] if k in r.get("adv2", {}) else float("nan") for k in names]
            else:
                pgd = [r["pgd"]["maps"][k][key] for k in names]
                adv = [
                    r["adv2"][k]["maps"][k][key] if k in r.get("adv2", {}) else float("nan")
                    for k in names
                ]
            ax.bar([x - 0.2 for x in xs], pgd, 0.4, color=PGD_COLOR, label="PGD")
            ax.bar([x + 0.2 for x in xs], adv, 0.4, color=ADV2_COLOR, label="ADV²")
            if key in ("l1", "iou"):
                noise = [r["noise"][k][key] for k in names]
                ax.scatter(
                    list(xs),
                    noise,
                    marker="_",
                    s=400,
                    color=NOISE_COLOR,
                    label="benign ±ε noise",
                    zorder=3,
                )
            ax.set_xticks(list(xs))
            ax.set_xticklabels(names)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{c}: {title}", fontsize=10)
            if i == 0 and j == 2:
                ax.legend(fontsize=8)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def samples_figure(
    path: Path, name: str, t: dict[str, Any], classes: tuple[str, ...] | list[str]
) -> Path:
    """Per interpreter, a row of images (benign | PGD | ADV²) and a row of their maps."""
    plt = _plt()
    interps = list(t["benign"])
    n = t["x"].shape[0]
    rows, cols = 2 * len(interps), 3 * n
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows), squeeze=False)
    for i, k in enumerate(interps):
        adv = t["adv2"].get(k)
        for s in range(n):
            cells = [
                ("benign", t["x"][s], t["benign"][k][s] if s < t["benign"][k].shape[0] else None),
                (
                    "PGD",
                    t["pgd_x"][s],
                    t["pgd_maps"][k][s] if s < t["pgd_maps"][k].shape[0] else None,
                ),
                (
                    "ADV²",
                    adv[0][s] if adv is not None and s < adv[0].shape[0] else None,
                    adv[1][s] if adv is not None and s < adv[1].shape[0] else None,
                ),
            ]
            for j, (label, img, m) in enumerate(cells):
                ax_i, ax_m = axes[2 * i][3 * s + j], axes[2 * i + 1][3 * s + j]
                if img is None:
                    ax_i.axis("off")
                    ax_m.axis("off")
                    continue
                _image(ax_i, img)
                if m is None:
                    ax_m.axis("off")
                else:
                    _map(ax_m, m)
                if i == 0:
                    cls = classes[int(t["y"][s])] if label == "benign" else classes[int(t["t"][s])]
                    ax_i.set_title(
                        f"{label}\n{'y' if label == 'benign' else 't'}={cls}", fontsize=8
                    )
            axes[2 * i + 1][0].set_ylabel(k, fontsize=10)
    fig.suptitle(f"{name}: images (odd rows) and maps (even rows), per interpreter", fontsize=11)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def transfer_figure(path: Path, results: dict[str, Any]) -> Path:
    """Heatmaps of L1(benign, adversarial map): rows = attack target, columns = judge."""
    plt = _plt()
    clfs = list(results["classifiers"])
    fig, axes = plt.subplots(1, len(clfs), figsize=(5.5 * len(clfs), 4.5), squeeze=False)
    for i, c in enumerate(clfs):
        table = transfer_table(results["classifiers"][c])
        rows = list(table)
        cols = list(table["pgd"])
        mat = torch.tensor(
            [[table[r].get(b, {}).get("l1", float("nan")) for b in cols] for r in rows]
        )
        ax = axes[0][i]
        im = ax.imshow(
            mat.numpy(), cmap="magma_r", vmin=0, vmax=max(0.05, float(mat.nan_to_num(0).max()))
        )
        for a in range(len(rows)):
            for b in range(len(cols)):
                v = float(mat[a, b])
                if v == v:
                    ax.text(
                        b,
                        a,
                        f"{v:.3f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if v < float(mat.nan_to_num(0).max()) * 0.6 else "white",
                    )
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(["PGD" if r == "pgd" else f"ADV²→{r}" for r in rows])
        ax.set_xlabel("interpreter judging")
        ax.set_title(f"{c}: L1 to the benign map", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def countermeasures_figure(path: Path, results: dict[str, Any]) -> Path | None:
    """Ensemble: L1 of the attacked member vs the ensemble; RTS vs RTS^A: PGD and ADV² L1."""
    plt = _plt()
    clfs = [c for c, r in results["classifiers"].items() if r.get("ensemble") or r.get("rtsa")]
    if not clfs:
        return None
    fig, axes = plt.subplots(len(clfs), 2, figsize=(11, 3.3 * len(clfs)), squeeze=False)
    for i, c in enumerate(clfs):
        r = results["classifiers"][c]
        ax = axes[i][0]
        e = r.get("ensemble")
        if e:
            names = list(e["attack_on_member"]) + ["ensemble"]
            member = [e["attack_on_member"][m]["member_l1"] for m in e["attack_on_member"]] + [
                float("nan")
            ]
            ens = [e["attack_on_member"][m]["ensemble_l1"] for m in e["attack_on_member"]] + [
                e["attack_on_ensemble"]["ensemble_l1"]
            ]
            xs: Sequence[int] = range(len(names))
            ax.bar(
                [x - 0.2 for x in xs], member, 0.4, color=ADV2_COLOR, label="attacked member's map"
            )
            ax.bar([x + 0.2 for x in xs], ens, 0.4, color="#2ca02c", label="ensemble map")
            ax.axhline(e["pgd"]["ensemble_l1"], color=PGD_COLOR, ls="--", label="ensemble map, PGD")
            ax.set_xticks(list(xs))
            ax.set_xticklabels([f"ADV²→{n}" for n in names], fontsize=8)
            ax.set_ylabel("L1 to benign map")
            ax.legend(fontsize=7)
        else:
            ax.axis("off")
        ax.set_title(f"{c}: ensemble interpretation", fontsize=10)
        ax = axes[i][1]
        a = r.get("rtsa")
        if a:
            xs = [0, 1]
            ax.bar(
                [x - 0.2 for x in xs],
                [a["rts"]["pgd_l1"], a["rtsa"]["pgd_l1"]],
                0.4,
                color=PGD_COLOR,
                label="PGD",
            )
            ax.bar(
                [x + 0.2 for x in xs],
                [a["rts"]["adv2_l1"], a["rtsa"]["adv2_l1"]],
                0.4,
                color=ADV2_COLOR,
                label="ADV²",
            )
            ax.set_xticks(xs)
            ax.set_xticklabels(["RTS", "RTS^A"])
            ax.set_ylabel("L1 to benign map")
            ax.legend(fontsize=8)
        else:
            ax.axis("off")
        ax.set_title(f"{c}: adversarial interpretation (gap = PGD − ADV²)", fontsize=10)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def make_figures(
    fig_dir: Path, results: dict[str, Any], tensors: dict[str, Any], classes: Any
) -> dict[str, Path]:
    """Write every figure; returns name → path."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    classes = list(classes) if classes is not None else [str(i) for i in range(1000)]
    paths = {
        "metrics": metrics_figure(fig_dir / "pgd_vs_adv2.png", results),
        "transfer": transfer_figure(fig_dir / "transfer.png", results),
    }
    for name, t in tensors.items():
        paths[f"samples_{name}"] = samples_figure(fig_dir / f"samples_{name}.png", name, t, classes)
    cm = countermeasures_figure(fig_dir / "countermeasures.png", results)
    if cm is not None:
        paths["countermeasures"] = cm
    return paths
