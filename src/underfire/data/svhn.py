"""SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``), read through torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from underfire.core.errors import DatasetNotFoundError
from underfire.data.base import (
    DatasetInfo,
    ImageDataset,
    check_label_range,
    register_source,
    uint8_to_float,
)
from underfire.data.splits import train_and_test_parts

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
        if (
            "X" not in mat
            or "y" not in mat
            or mat["X"].ndim != 4
            or mat["X"].shape[:3] != (32, 32, 3)
        ):
            raise DatasetNotFoundError(
                f"{path} is not an SVHN cropped-digits file (needs X of shape 32×32×3×N and y)"
            )
        images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2))  # (H, W, C, N) → (N, H, W, C)
        raw = mat["y"].astype(np.int64).reshape(-1)
        if raw.shape[0] != images.shape[0]:
            raise DatasetNotFoundError(
                f"{path} has {images.shape[0]} images but {raw.shape[0]} labels; download it again"
            )
        check_label_range(raw - 1, self.info, path)  # SVHN's labels are 1..10 (10 is the digit 0)
        labels = raw % 10
        return uint8_to_float(torch.from_numpy(images)), torch.from_numpy(labels)

    def load(self, root: Path, split: str, seed: int) -> ImageDataset:
        x, y = train_and_test_parts(
            split, seed, lambda train: self._read(root, "train" if train else "test")
        )
        return ImageDataset(x, y, self.info, split)


_DIGITS = tuple(str(i) for i in range(10))

SVHN = register_source(
    SvhnSource(
        DatasetInfo(
            "svhn",
            (3, 32, 32),
            10,
            _DIGITS,
            "SVHN cropped digits (Netzer et al. 2011)",
            (0.4377, 0.4438, 0.4728),
            (0.1980, 0.2010, 0.1970),
        )
    )
)
