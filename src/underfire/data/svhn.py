"""SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``), read through torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from underfire.core.errors import DatasetNotFoundError
from underfire.data.base import DatasetInfo, ImageDataset, uint8_to_float
from underfire.data.splits import carve, check_split

VAL_FRACTION = 0.1
HOW_TO_GET = (
    "Get train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ "
    "or pass --download."
)


class SvhnSource:
    def __init__(self, info: DatasetInfo) -> None:
        self.info = info

    def is_available(self, root: Path) -> bool:
        return (root / "test_32x32.mat").exists()

    def download(self, root: Path) -> None:
        import torchvision.datasets as tvd

        for split in ("train", "test"):
            tvd.SVHN(str(root), split=split, download=True)

    def _read(self, root: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = root / f"{part}_32x32.mat"
        if not path.exists():
            raise DatasetNotFoundError(f"svhn: {path} not found. {HOW_TO_GET}")
        import scipy.io

        try:
            mat = scipy.io.loadmat(str(path))
        except Exception as err:  # scipy raises several unrelated types for a bad file
            raise DatasetNotFoundError(
                f"{path} cannot be read as a .mat file ({err}); download it again"
            ) from err
        images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2))  # (H, W, C, N) → (N, H, W, C)
        labels = mat["y"].astype(np.int64).reshape(-1) % 10  # SVHN stores the digit 0 as label 10
        return uint8_to_float(torch.from_numpy(images)), torch.from_numpy(labels)

    def load(self, root: Path, split: str, seed: int) -> ImageDataset:
        check_split(split)
        if split == "test":
            x, y = self._read(root, "test")
            return ImageDataset(x, y, self.info, split)
        x, y = self._read(root, "train")
        idx = carve(len(y), split, {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION}, seed)
        return ImageDataset(x[idx], y[idx], self.info, split)
