"""Figures of the diagnosis: per-layer curves and InterpretGAN images (clean vs adversarial)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from underfire.core.state import model_state
from underfire.diagnosis.interpretgan import InterpretGAN
from underfire.diagnosis.layer_vulnerability import LayerVulnerability
from underfire.diagnosis.layers import resolve_layers
from underfire.plotting import new_figure, save_figure

__all__ = ["plot_interpretgan", "plot_layer_vulnerability", "short_layer_names"]


def short_layer_names(layers: Sequence[str]) -> list[str]:
    """Layer names without the shared ``net.``/``features.`` prefixes, for axis labels."""
    out = []
    for name in layers:
        for prefix in ("net.features.", "net.classifier.", "net."):
            if name.startswith(prefix):
                name = ("fc" if prefix == "net.classifier." else "") + name[len(prefix) :]
                break
        out.append(name)
    return out


def plot_layer_vulnerability(
    results: dict[str, LayerVulnerability], path: str | Path, title: str = ""
) -> Path:
    """Four panels, one line per result (e.g. per model): amplification, its growth,
    top-k patching (restored solid, broken dashed), information loss against amplification."""
    fig = new_figure(10, 7)
    axes = fig.subplots(2, 2)
    for label, r in results.items():
        ticks = list(range(len(r.layers)))
        names = short_layer_names(r.layers)
        (line,) = axes[0][0].plot(ticks, r.amplification, marker="o", label=label)
        axes[0][1].plot(ticks, r.growth, marker="o", color=line.get_color(), label=label)
        axes[1][0].plot(
            ticks, r.restored_topk, marker="o", color=line.get_color(), label=f"{label} restored"
        )
        axes[1][0].plot(
            ticks,
            r.broken_topk,
            marker="s",
            ls="--",
            color=line.get_color(),
            label=f"{label} broken",
        )
        axes[1][1].scatter(r.information_loss, r.amplification, color=line.get_color(), label=label)
        for i, n in enumerate(names):
            axes[1][1].annotate(n, (r.information_loss[i], r.amplification[i]), fontsize=7)
        for ax in (axes[0][0], axes[0][1], axes[1][0]):
            ax.set_xticks(ticks, names, rotation=30, fontsize=8)
    axes[0][0].set(title="amplification ‖h(x′)−h(x)‖/‖h(x)‖", ylabel="relative change")
    axes[0][1].axhline(1.0, color="grey", lw=0.8)
    axes[0][1].set(title="growth (vs previous layer; first vs input)", ylabel="ratio")
    topk = next(iter(results.values())).topk if results else 0.1
    axes[1][0].set(
        title=f"top-{topk:g} patching: share of p(correct) moved",
        ylabel="fraction",
        ylim=(-0.05, 1.1),
    )
    axes[1][1].set(
        title="information loss vs amplification",
        xlabel="information loss (FVU)",
        ylabel="amplification",
    )
    for row in axes:
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.subplots_adjust(hspace=0.5, wspace=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


@torch.no_grad()
def plot_interpretgan(
    gan: InterpretGAN,
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor | None,
    path: str | Path,
    *,
    layers: Sequence[str | nn.Module] | None = None,
    classes: Sequence[str] | None = None,
) -> Path:
    """One row per image: clean and adversarial inputs, then for each layer the images
    generated from the clean and from the adversarial features, each titled with the class
    the classifier gives it (red when it differs from the clean input's class). With
    ``x_adv=None`` only the clean columns are drawn."""
    names = list(resolve_layers(model, layers if layers is not None else gan.layers))
    clean = gan.generate(model, x, names)
    adv = gan.generate(model, x_adv, names) if x_adv is not None else {}
    with model_state(model, mode="eval", freeze=True):
        base = model(x).argmax(1)

        def predict(images: torch.Tensor) -> torch.Tensor:
            return model(images).argmax(1)

        panels = [("clean", x, predict(x))]
        if x_adv is not None:
            panels.append(("adversarial", x_adv, predict(x_adv)))
        for n, short in zip(names, short_layer_names(names), strict=True):
            panels.append((f"{short}\nfrom clean", clean[n], predict(clean[n])))
            if n in adv:
                panels.append((f"{short}\nfrom adv.", adv[n], predict(adv[n])))
    label = (lambda c: str(classes[c])) if classes else str
    rows, cols = x.shape[0], len(panels)
    fig = new_figure(1.15 * cols, 1.25 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, (title, images, pred) in enumerate(panels):
        for i in range(rows):
            img = images[i].detach().cpu().permute(1, 2, 0).squeeze(-1).numpy()
            ax = axes[i][j]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ok = int(pred[i]) == int(base[i])
            ax.set_title(label(int(pred[i])), fontsize=8, color="black" if ok else "red", pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:  # column header above the first row's label
                ax.text(
                    0.5, 1.22, title, transform=ax.transAxes, ha="center", va="bottom", fontsize=7
                )
    return save_figure(fig, path)
