"""MNIST-format (IDX) datasets: MNIST, Fashion-MNIST, notMNIST.

Files are looked up, plain or gzipped, in the torchvision layout (``root/MNIST/raw``) and in a
flat one (``root/mnist``), so both a torchvision download and a copy of the original files work.
"""

from __future__ import annotations

import gzip
import zlib
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
from underfire.data.splits import carve, check_split, train_and_test_parts

_IMAGE_MAGIC = 2051
_LABEL_MAGIC = 2049
# notMNIST here has only its 10k test sample: it is split 70/10/20, seeded (documented in the README).
NOTMNIST_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read an IDX file (plain or .gz) into a uint8 array, checking its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # a corrupt .gz raises all three kinds
        raise DatasetNotFoundError(
            f"{path} cannot be read ({type(err).__name__}: {err}); it is damaged, download it again"
        ) from err
    if len(raw) < 8:
        raise DatasetNotFoundError(f"{path} is truncated; download it again")
    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        raise DatasetNotFoundError(
            f"{path} is not an IDX file of the expected kind (magic {magic}, expected {expected_magic})"
        )
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset != count:
        raise DatasetNotFoundError(
            f"{path} holds {len(raw) - offset} bytes of data, its header says {count}; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find(root: Path, folders: list[str], stem: str) -> Path | None:
    for folder in folders:
        for suffix in ("", ".gz"):
            path = root / folder / f"{stem}{suffix}"
            if path.exists():
                return path
    return None


class IdxSource:
    """One IDX dataset: where its files live and how to get them."""

    def __init__(
        self,
        info: DatasetInfo,
        folders: list[str],
        how_to_get: str,
        torchvision_name: str | None,
        sizes: dict[str, int] | None = None,
    ) -> None:
        self.info = info
        self.sizes = sizes or {}  # expected image counts per part ("train", "t10k"), if known
        self.folders = folders
        self.how_to_get = how_to_get
        self.torchvision_name = torchvision_name

    def _files(self, root: Path, part: str) -> tuple[Path | None, Path | None]:
        return (
            _find(root, self.folders, f"{part}-images-idx3-ubyte"),
            _find(root, self.folders, f"{part}-labels-idx1-ubyte"),
        )

    def is_available(self, root: Path) -> bool:
        return all(self._files(root, "t10k"))

    def _read(self, root: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self._files(root, part)
        if images is None or labels is None:
            where = " or ".join(str(root / f) for f in self.folders)
            raise DatasetNotFoundError(
                f"{self.info.name}: {part}-images-idx3-ubyte[.gz] and {part}-labels-idx1-ubyte[.gz] "
                f"not found in {where}. {self.how_to_get}"
            )
        x = read_idx(images, _IMAGE_MAGIC)
        y = read_idx(labels, _LABEL_MAGIC)
        if x.shape[0] != y.shape[0]:
            raise DatasetNotFoundError(
                f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels"
            )
        if x.ndim != 3 or tuple(x.shape[1:]) != tuple(self.info.shape[1:]):
            raise DatasetNotFoundError(
                f"{images} holds images of shape {tuple(x.shape[1:])}, {self.info.name} has "
                f"{self.info.shape[1]}×{self.info.shape[2]}; it belongs to another data set"
            )
        expected = self.sizes.get(part)
        if expected is not None and x.shape[0] != expected:
            raise DatasetNotFoundError(
                f"{images} holds {x.shape[0]} images, {self.info.name}'s {part} part has "
                f"{expected}: the file is incomplete; download it again"
            )
        check_label_range(y, self.info, labels)
        return uint8_to_float(torch.from_numpy(x.copy())), torch.from_numpy(y.astype(np.int64))

    def verify(self, root: Path) -> None:
        """Read every part present and check it (header, size, labels); raise if damaged."""
        for part in ("t10k", "train"):
            if all(self._files(root, part)):
                self._read(root, part)

    def download(self, root: Path) -> None:
        if self.torchvision_name is None:
            raise DatasetNotFoundError(
                f"{self.info.name} cannot be downloaded automatically. {self.how_to_get}"
            )
        import torchvision.datasets as tvd

        cls = getattr(tvd, self.torchvision_name)
        for train in (True, False):
            cls(str(root), train=train, download=True)

    def load(self, root: Path, split: str, seed: int) -> ImageDataset:
        check_split(split)
        has_train = all(self._files(root, "train"))
        if not has_train and self.torchvision_name is None:
            # Only a test sample exists (notMNIST here): split it, seeded.
            x, y = self._read(root, "t10k")
            idx = carve(len(y), split, NOTMNIST_FRACTIONS, seed)
            return ImageDataset(x[idx], y[idx], self.info, split)
        x, y = train_and_test_parts(
            split, seed, lambda train: self._read(root, "train" if train else "t10k")
        )
        return ImageDataset(x, y, self.info, split)


_DIGITS = tuple(str(i) for i in range(10))

MNIST = register_source(
    IdxSource(
        DatasetInfo(
            "mnist",
            (1, 28, 28),
            10,
            _DIGITS,
            "MNIST handwritten digits (LeCun et al. 1998)",
            (0.1307,),
            (0.3081,),
        ),
        ["MNIST/raw", "mnist", "."],
        "Copy the four *-ubyte.gz files from http://yann.lecun.com/exdb/mnist/ there, or pass --download.",
        "MNIST",
        sizes={"train": 60_000, "t10k": 10_000},
    )
)

FASHION_MNIST = register_source(
    IdxSource(
        DatasetInfo(
            "fashion-mnist",
            (1, 28, 28),
            10,
            (
                "t-shirt",
                "trouser",
                "pullover",
                "dress",
                "coat",
                "sandal",
                "shirt",
                "sneaker",
                "bag",
                "ankle-boot",
            ),
            "Fashion-MNIST (Xiao et al. 2017)",
            (0.2860,),
            (0.3530,),
        ),
        ["FashionMNIST/raw", "fashion-mnist", "."],
        "Copy the four *-ubyte.gz files of https://github.com/zalandoresearch/fashion-mnist there, "
        "install Debian's dataset-fashion-mnist, or pass --download.",
        "FashionMNIST",
        sizes={"train": 60_000, "t10k": 10_000},
    )
)

NOTMNIST = register_source(
    IdxSource(
        DatasetInfo(
            "notmnist",
            (1, 28, 28),
            10,
            tuple("ABCDEFGHIJ"),
            "notMNIST letters A–J in MNIST format (Bulatov 2011); a 10k sample split 70/10/20 when no train files exist",
        ),
        ["notMNIST/raw", "notmnist", "."],
        "Get the MNIST-format files (t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) of "
        "https://github.com/davidflanagan/notMNIST-to-MNIST; notMNIST has no torchvision downloader.",
        None,
    )
)
