"""CIFAR-10: the official binary version (``cifar-10-batches-bin``) or the python version.

The binary version is 10,000 records per file of 1 label byte + 3,072 pixel bytes (the R, G
and B planes, each 32×32 row-major). torchvision only reads the python version, which is
delegated to it.
"""

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

_RECORD = 1 + 3 * 32 * 32
_TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
_TEST_FILES = ["test_batch.bin"]
HOW_TO_GET = (
    "Get CIFAR-10's binary version from https://www.cs.toronto.edu/~kriz/cifar.html and unpack "
    "it there, or pass --download to fetch the python version through torchvision."
)


def read_cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary-version file → (N, 32, 32, 3) uint8 images and (N,) labels."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise DatasetNotFoundError(
            f"{path} has {raw.size} bytes, not a whole number of {_RECORD}-byte CIFAR-10 records; download it again"
        )
    records = raw.reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetNotFoundError(
            f"{path} holds labels up to {labels.max()}, CIFAR-10 has 10 classes (0–9): the file "
            "is damaged or not a CIFAR-10 binary file; download it again"
        )
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


class Cifar10Source:
    def __init__(self, info: DatasetInfo) -> None:
        self.info = info

    def _bin_dir(self, root: Path) -> Path:
        return root / "cifar-10-batches-bin"

    def _py_dir(self, root: Path) -> Path:
        return root / "cifar-10-batches-py"

    def is_available(self, root: Path) -> bool:
        return (self._bin_dir(root) / "test_batch.bin").exists() or (
            self._py_dir(root) / "test_batch"
        ).exists()

    def _read_part(self, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        bin_dir = self._bin_dir(root)
        files = _TRAIN_FILES if train else _TEST_FILES
        if all((bin_dir / f).exists() for f in files):
            parts = [read_cifar_bin(bin_dir / f) for f in files]
            x = np.concatenate([p[0] for p in parts])
            y = np.concatenate([p[1] for p in parts])
        elif self._py_dir(root).exists():
            import torchvision.datasets as tvd

            try:
                ds = tvd.CIFAR10(str(root), train=train, download=False)
            except Exception as err:  # unpickling a damaged batch raises many types
                raise DatasetNotFoundError(
                    f"cifar10: the python version in {self._py_dir(root)} cannot be read "
                    f"({type(err).__name__}: {err}); download it again"
                ) from err
            x, y = ds.data, np.asarray(ds.targets, dtype=np.int64)
            check_label_range(y, self.info, self._py_dir(root))
        else:
            raise DatasetNotFoundError(
                f"cifar10: expected {', '.join(files)} in {bin_dir} (or the python version in "
                f"{self._py_dir(root)}). {HOW_TO_GET}"
            )
        return uint8_to_float(torch.from_numpy(np.ascontiguousarray(x))), torch.from_numpy(y)

    def verify(self, root: Path) -> None:
        """Read the test part, and the training part when present; raise if damaged."""
        self._read_part(root, train=False)
        bin_dir = self._bin_dir(root)
        if (
            all((bin_dir / f).exists() for f in _TRAIN_FILES)
            or (self._py_dir(root) / "data_batch_1").exists()
        ):
            self._read_part(root, train=True)

    def download(self, root: Path) -> None:
        import torchvision.datasets as tvd

        for train in (True, False):
            tvd.CIFAR10(str(root), train=train, download=True)

    def load(self, root: Path, split: str, seed: int) -> ImageDataset:
        x, y = train_and_test_parts(split, seed, lambda train: self._read_part(root, train=train))
        return ImageDataset(x, y, self.info, split)


CIFAR10 = register_source(
    Cifar10Source(
        DatasetInfo(
            "cifar10",
            (3, 32, 32),
            10,
            (
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            "CIFAR-10 (Krizhevsky 2009), binary or python version",
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
        )
    )
)
