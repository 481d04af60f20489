"""Figure helpers: a headless matplotlib backend and atomic PNG output."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from underfire import _io

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
