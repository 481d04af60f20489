"""Figure helpers: a headless matplotlib backend and atomic PNG output."""

from __future__ import annotations

import io
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
