"""In-memory image datasets: float images in [0, 1], NCHW, integer labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from underfire.core.errors import DatasetNotFoundError
from underfire.core.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before loading it."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    classes: tuple[str, ...]
    description: str
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())


class Source(Protocol):
    """Where a data set's files live and how to read them; one per registered name."""

    info: DatasetInfo

    def is_available(self, root: Path) -> bool: ...
    def download(self, root: Path) -> None: ...
    def load(self, root: Path, split: str, seed: int) -> Dataset[Any]: ...


#: Every data set registers its source where the source is defined:
#: ``DATASETS.register("mnist")(lambda: IdxSource(...))`` (a factory, like the other registries).
DATASETS: Registry[Any] = Registry("dataset")


def register_source(source: Any) -> Any:
    """Register ``source`` under its ``info.name``; returns it."""
    DATASETS.register(source.info.name)(lambda: source)
    return source


def check_label_range(labels: np.ndarray | torch.Tensor, info: DatasetInfo, where: object) -> None:
    """Refuse labels outside ``[0, info.num_classes)`` read from ``where`` (a file, a folder).

    A label of 255 in a 10-class IDX file is a damaged or foreign file; training on it would
    crash deep inside the loss (or, on GPU, corrupt memory silently).
    """
    if len(labels) == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= info.num_classes:
        raise DatasetNotFoundError(
            f"{where} holds labels in [{lo}, {hi}], but {info.name} has {info.num_classes} "
            f"classes (0–{info.num_classes - 1}): the file is damaged or belongs to another data "
            "set; download it again"
        )


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images held in memory as one float tensor.

    Attributes:
        x: (N, C, H, W) float32 in [0, 1].
        y: (N,) int64 class indices.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo, split: str) -> None:
        if x.dim() != 4 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"expected x (N,C,H,W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
            raise ValueError(
                f"labels of {info.name} must be in [0, {info.num_classes - 1}], got values in "
                f"[{int(y.min())}, {int(y.max())}]"
            )
        self.x = x
        self.y = y.long()
        self.info = info
        self.split = split

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def subset(self, n: int | None = None, *, indices: torch.Tensor | None = None) -> ImageDataset:
        """The first ``n`` examples, or the given indices, as a new dataset (views, no copy)."""
        if indices is None:
            indices = torch.arange(min(n if n is not None else len(self), len(self)))
        return ImageDataset(self.x[indices], self.y[indices], self.info, self.split)

    def __repr__(self) -> str:
        return f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, shape={tuple(self.x.shape[1:])})"


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8 → (N, C, H, W) float32 in [0, 1]."""
    if images.dim() == 3:
        images = images.unsqueeze(-1)
    return images.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
