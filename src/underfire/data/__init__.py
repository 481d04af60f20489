"""Datasets by name, all yielding float images in [0, 1] (NCHW) with integer labels.

>>> from underfire.data import load_dataset
>>> train = load_dataset("digits", split="train")     # embedded, never needs a network
>>> test = load_dataset("mnist", split="test", root="data")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from underfire.core.errors import DatasetNotFoundError, UnderfireError

# Each module registers its data sets where their sources are defined (importing it does).
from underfire.data import digits, svhn  # noqa: F401
from underfire.data.base import DATASETS, DatasetInfo, ImageDataset, Source, check_label_range
from underfire.data.cifar import read_cifar_bin
from underfire.data.idx import read_idx
from underfire.data.imagenet import ImageFolderDataset
from underfire.data.splits import SPLITS

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DatasetStatus",
    "ImageDataset",
    "ImageFolderDataset",
    "Source",
    "check_label_range",
    "dataset_info",
    "dataset_names",
    "dataset_status",
    "default_root",
    "load_dataset",
    "read_cifar_bin",
    "read_idx",
]


def default_root() -> Path:
    """``$UNDERFIRE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("UNDERFIRE_DATA", "data"))


def dataset_names() -> list[str]:
    return DATASETS.names()


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.create(name).info


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
    source = DATASETS.create(name)
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
    #: Why files that are present cannot be used (truncated, corrupt, wrong labels), or None.
    problem: str | None = None


def dataset_status(root: str | Path | None = None, *, verify: bool = True) -> list[DatasetStatus]:
    """Every dataset, with whether it can be used from ``root``.

    With ``verify`` (the default) the files that are present are read and checked (headers,
    sizes, label ranges), so a truncated or corrupt copy is reported with its ``problem``
    instead of being called available. This reads the files: seconds for MNIST-sized sets.
    """
    root_path = Path(root) if root is not None else default_root()
    out = []
    for name in dataset_names():
        source = DATASETS.create(name)
        available, problem = source.is_available(root_path), None
        if available and verify:
            try:
                check = getattr(source, "verify", None)
                if check is not None:
                    check(root_path)
                else:
                    source.load(root_path, "test", 0)
            except (UnderfireError, ValueError, OSError) as err:
                available, problem = False, " ".join(str(err).split())
        out.append(DatasetStatus(name, available, source.info.description, problem))
    return out
