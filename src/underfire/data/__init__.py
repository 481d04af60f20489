"""Datasets by name, all yielding float images in [0, 1] (NCHW) with integer labels.

>>> from underfire.data import load_dataset
>>> train = load_dataset("digits", split="train")     # embedded, never needs a network
>>> test = load_dataset("mnist", split="test", root="data")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from underfire.core.errors import DatasetNotFoundError
from underfire.core.registry import Registry
from underfire.data.base import DatasetInfo, ImageDataset
from underfire.data.cifar import Cifar10Source, read_cifar_bin
from underfire.data.digits import DigitsSource
from underfire.data.idx import IdxSource, read_idx
from underfire.data.imagenet import ImageFolderDataset, ImageNetSource
from underfire.data.splits import SPLITS
from underfire.data.svhn import SvhnSource

__all__ = [
    "SPLITS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetStatus",
    "ImageDataset",
    "ImageFolderDataset",
    "create",
    "dataset_info",
    "dataset_names",
    "dataset_status",
    "default_root",
    "load_dataset",
    "names",
    "read_cifar_bin",
    "read_idx",
]


class Source(Protocol):
    info: DatasetInfo

    def is_available(self, root: Path) -> bool: ...
    def download(self, root: Path) -> None: ...
    def load(self, root: Path, split: str, seed: int) -> ImageDataset | ImageFolderDataset: ...


_DIGITS = tuple(str(i) for i in range(10))
_SOURCES: Registry[Source] = Registry("dataset")


def _add(name: str, source: Source) -> None:
    _SOURCES.register(name)(lambda: source)


_add(
    "digits",
    DigitsSource(
        DatasetInfo(
            "digits",
            (1, 8, 8),
            10,
            _DIGITS,
            "scikit-learn's bundled 8×8 handwritten digits (embedded, offline)",
        )
    ),
)
_add(
    "mnist",
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
    ),
)
_add(
    "fashion-mnist",
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
    ),
)
_add(
    "notmnist",
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
    ),
)
_add(
    "cifar10",
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
    ),
)
_add(
    "svhn",
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
    ),
)
_add(
    "imagenet",
    ImageNetSource(
        DatasetInfo(
            "imagenet",
            (3, 224, 224),
            1000,
            tuple(str(i) for i in range(1000)),
            "ImageNet ILSVRC-2012: class folders, or the 1000-image sample layout",
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
        )
    ),
)


def default_root() -> Path:
    """``$UNDERFIRE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("UNDERFIRE_DATA", "data"))


def dataset_names() -> list[str]:
    return _SOURCES.names()


def dataset_info(name: str) -> DatasetInfo:
    return _SOURCES.create(name).info


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    *,
    download: bool = False,
    seed: int = 0,
) -> ImageDataset | ImageFolderDataset:
    """Load a dataset split by name.

    Args:
        name: one of :func:`dataset_names`.
        split: ``"train"``, ``"val"`` or ``"test"``. Validation is carved, seeded, from the
            official training set (or from the only split there is; see the README).
        root: folder holding the data (default :func:`default_root`).
        download: fetch through torchvision first when the files are missing.
        seed: seed of the train/validation split.

    Raises:
        UnknownNameError: unknown dataset name.
        DatasetNotFoundError: files missing or malformed; the message names them and the fix.
    """
    source = _SOURCES.create(name)
    root_path = Path(root) if root is not None else default_root()
    if download and not source.is_available(root_path):
        root_path.mkdir(parents=True, exist_ok=True)
        source.download(root_path)
    return source.load(root_path, split, seed)


@dataclass(frozen=True)
class DatasetStatus:
    name: str
    available: bool
    description: str


def dataset_status(root: str | Path | None = None) -> list[DatasetStatus]:
    """Every dataset, with whether its files are present under ``root``."""
    root_path = Path(root) if root is not None else default_root()
    out = []
    for name in dataset_names():
        source = _SOURCES.create(name)
        out.append(DatasetStatus(name, source.is_available(root_path), source.info.description))
    return out


# the verbs every registry package exposes (attacks, interpreters, models, defenses): for a
# dataset, creating it is loading a split, ``create("digits", "test")``
create = load_dataset
names = dataset_names
