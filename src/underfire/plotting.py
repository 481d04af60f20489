"""Figure helpers: a headless matplotlib backend, atomic PNG output, and the map figures
people read (maps over images with a colour bar, predictions titled "pred (true)").

>>> from underfire.plotting import overlay_maps, prediction_titles, save_figure
>>> titles, colors = prediction_titles(model(x).argmax(1), y)
>>> save_figure(overlay_maps(x, Saliency()(model, x), titles=titles, title_colors=colors), "maps.png")
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from underfire.core import io as _io

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A figure not attached to pyplot's global state (thread-safe, no display needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return _io.write_bytes(path, buffer.getvalue())


def save_grid(
    path: Path, x: Any, y: Any, pred: Any, conf: Any, maps: dict[str, Any], classes: Any = None
) -> Path:
    """One row per image: the image titled with its prediction, then one map per interpreter."""
    n, cols = x.shape[0], 1 + len(maps)
    fig = new_figure(1.6 * cols, 1.6 * n)
    axes = fig.subplots(n, cols, squeeze=False)
    label = (lambda c: str(classes[c])) if classes else str
    for i in range(n):
        img = x[i].detach().cpu().permute(1, 2, 0)
        axes[i][0].imshow(
            img.squeeze(-1).numpy(), cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1
        )
        ok = int(pred[i]) == int(y[i])
        axes[i][0].set_title(
            f"{label(int(pred[i]))} {float(conf[i]):.2f}"
            + ("" if ok else f" (true {label(int(y[i]))})"),
            fontsize=8,
            color="black" if ok else "red",
        )
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i][j].imshow(m[i, 0].cpu().numpy(), cmap="jet", vmin=0, vmax=1)
            if i == 0:
                axes[i][j].set_title(name, fontsize=9)
        for ax in axes[i]:
            ax.axis("off")
    return save_figure(fig, path)


def _image_array(img: Any) -> tuple[Any, str | None]:
    """(C, H, W) tensor in [0, 1] → an array imshow understands and its colour map."""
    arr = img.detach().float().cpu().permute(1, 2, 0).numpy()
    return (arr[..., 0], "gray") if arr.shape[-1] == 1 else (arr.clip(0, 1), None)


def overlay_maps(
    images: Any,
    maps: Any,
    *,
    titles: Sequence[str] | None = None,
    title_colors: Sequence[str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    ncols: int = 8,
    side_by_side: bool = False,
    colorbar_label: str = "relevance",
) -> Figure:
    """A grid of explanation maps over their images, with one shared colour bar.

    Args:
        images: (N, C, H, W) tensor in [0, 1].
        maps: (N, 1, H, W) maps in [0, 1] (an interpreter's output).
        titles: one title per image (e.g. "7 (1)" for predicted (true)).
        title_colors: one colour per title (red for misclassified images, say).
        alpha: opacity of the map over the image.
        cmap: matplotlib colour map of the maps.
        ncols: images per row (the grid wraps; no 2000-px single columns).
        side_by_side: draw image and map in adjacent cells instead of overlaying them.
        colorbar_label: label of the colour bar.

    Returns:
        A matplotlib Figure (save it with :func:`save_figure`).
    """
    n = int(images.shape[0])
    if n == 0 or tuple(maps.shape[:1]) != (n,):
        raise ValueError(
            f"images and maps must be non-empty batches of the same size, got {tuple(images.shape)} "
            f"and {tuple(maps.shape)}"
        )
    per = 2 if side_by_side else 1
    cols = max(1, min(ncols, n)) * per
    rows = -(-n * per // cols)
    fig = new_figure(1.5 * cols + 0.8, 1.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    shown = None
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i * per, cols)
        img, gray = _image_array(images[i])
        heat = maps[i, 0].detach().float().cpu().numpy()
        ax = axes[r][c]
        ax.imshow(img, cmap=gray, vmin=0, vmax=1)
        if side_by_side:
            ax = axes[r][c + 1]
            shown = ax.imshow(heat, cmap=cmap, vmin=0, vmax=1)
        else:
            shown = ax.imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=alpha)
        if titles is not None:
            color = title_colors[i] if title_colors is not None else "black"
            axes[r][c].set_title(titles[i], fontsize=8, color=color)
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig


def prediction_titles(
    pred: Any, y: Any, classes: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Titles "pred (true)" and colours: black when right, red when wrong."""
    name = (lambda c: str(classes[c])) if classes else str
    titles, colors = [], []
    for p, t in zip(pred.tolist(), y.tolist(), strict=True):
        titles.append(name(p) if p == t else f"{name(p)} ({name(t)})")
        colors.append("black" if p == t else "red")
    return titles, colors
