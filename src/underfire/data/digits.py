"""scikit-learn's bundled 8×8 handwritten digits: the embedded offline default.

1,797 images with values 0–16, scaled to [0, 1]. Split seeded 70/10/20 into train/val/test.
"""

from __future__ import annotations

from pathlib import Path

import torch

from underfire.data.base import DatasetInfo, ImageDataset, register_source
from underfire.data.splits import carve, check_split

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


class DigitsSource:
    def __init__(self, info: DatasetInfo) -> None:
        self.info = info

    def is_available(self, root: Path) -> bool:
        return True

    def download(self, root: Path) -> None:
        """Nothing to download: the data ships inside scikit-learn."""

    def load(self, root: Path, split: str, seed: int) -> ImageDataset:
        from sklearn.datasets import load_digits

        check_split(split)
        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
        y = torch.tensor(bunch.target, dtype=torch.int64)
        idx = carve(len(y), split, FRACTIONS, seed)
        return ImageDataset(x[idx], y[idx], self.info, split)


_DIGITS = tuple(str(i) for i in range(10))

DIGITS = register_source(
    DigitsSource(
        DatasetInfo(
            "digits",
            (1, 8, 8),
            10,
            _DIGITS,
            "scikit-learn's bundled 8×8 handwritten digits (embedded, offline)",
        )
    )
)
