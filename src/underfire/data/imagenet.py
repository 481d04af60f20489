"""ImageNet: a folder of class subfolders (``root/imagenet/{train,val}/<wnid>/*.JPEG``) or the
1000-image sample layout (``root/imagenet-sample/images`` + ``labels.csv``).

Images are resized (shorter side 256) and center-cropped to 224, as torchvision's evaluation
transform does. The sample has one image per class and no train split: it serves attacks and
explanations, and is returned for the ``test`` split.
"""

from __future__ import annotations

import csv
import functools
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from underfire.core.errors import DatasetNotFoundError
from underfire.data.base import DatasetInfo, check_label_range, register_source
from underfire.data.splits import check_split

_EXTENSIONS = {".jpg", ".jpeg", ".png", ".JPEG", ".JPG", ".PNG"}
HOW_TO_GET = (
    "Put ImageNet as root/imagenet/{train,val}/<wnid>/<image>.JPEG (ILSVRC-2012 from "
    "https://image-net.org, which needs an account), or a sample as root/imagenet-sample "
    "with images/ and labels.csv (columns class_index, wnid, class_name, file)."
)


@functools.cache
def wnid_index() -> dict[str, int]:
    """ILSVRC-2012 wnid → class index (the position of the wnid in the sorted list of the
    1000 wnids, the index every ImageNet classifier is trained with)."""
    text = resources.files("underfire.data").joinpath("imagenet_wnids.txt").read_text("ascii")
    wnids = text.split()
    return {wnid: i for i, wnid in enumerate(wnids)}


def load_image(path: Path, size: int = 224) -> torch.Tensor:
    """Read an image and apply resize-256 / center-crop-224 → (3, size, size) float in [0, 1]."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as tf

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            rgb = tf.resize(rgb, round(size * 256 / 224))
            rgb = tf.center_crop(rgb, size)
            return tf.pil_to_tensor(rgb).float().div_(255.0)
    except (OSError, UnidentifiedImageError) as err:
        raise DatasetNotFoundError(f"{path} is not a readable image ({err})") from err


class ImageFolderDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images read from disk one at a time; returns ((3, 224, 224) float, label)."""

    def __init__(self, files: list[Path], labels: list[int], info: DatasetInfo, split: str) -> None:
        self.files = files
        self.y = torch.tensor(labels, dtype=torch.int64)
        self.info = info
        self.split = split

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return load_image(self.files[index], self.info.shape[-1]), self.y[index]

    def tensors(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images stacked: ((n, 3, 224, 224), (n,))."""
        n = len(self) if n is None else min(n, len(self))
        return torch.stack([self[i][0] for i in range(n)]), self.y[:n].clone()

    def __repr__(self) -> str:
        return f"ImageFolderDataset({self.info.name!r}, split={self.split!r}, n={len(self)})"


class ImageNetSource:
    def __init__(self, info: DatasetInfo) -> None:
        self.info = info

    def is_available(self, root: Path) -> bool:
        return (root / "imagenet-sample" / "labels.csv").exists() or (root / "imagenet").is_dir()

    def download(self, root: Path) -> None:
        raise DatasetNotFoundError(f"ImageNet cannot be downloaded automatically. {HOW_TO_GET}")

    def load(self, root: Path, split: str, seed: int) -> ImageFolderDataset:
        check_split(split)
        folder = root / "imagenet" / split
        if folder.is_dir():
            classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
            if not classes:
                raise DatasetNotFoundError(f"{folder} has no class subfolders. {HOW_TO_GET}")
            index = wnid_index()
            unknown = [c for c in classes if c not in index]
            if unknown:
                raise DatasetNotFoundError(
                    f"{folder} has class folders that are not ILSVRC-2012 wnids ({', '.join(unknown[:3])}"
                    f"{', ...' if len(unknown) > 3 else ''}); name each folder by its wnid "
                    "(e.g. n01440764) so that its images get their ImageNet class index"
                )
            files, labels = [], []
            for wnid in classes:  # a subset of the classes keeps their ImageNet indices
                for f in sorted((folder / wnid).iterdir()):
                    if f.suffix in _EXTENSIONS:
                        files.append(f)
                        labels.append(index[wnid])
            return ImageFolderDataset(files, labels, self.info, split)
        sample = root / "imagenet-sample"
        if (sample / "labels.csv").exists():
            if split != "test":
                raise DatasetNotFoundError(
                    f"the ImageNet sample in {sample} has one image per class and only a 'test' split; "
                    f"for {split!r} provide {folder}"
                )
            with open(sample / "labels.csv", newline="") as fh:
                rows = list(csv.DictReader(fh))
            missing = [r["file"] for r in rows if not (sample / "images" / r["file"]).exists()]
            if missing:
                raise DatasetNotFoundError(
                    f"{len(missing)} images listed in {sample / 'labels.csv'} are missing, e.g. {missing[0]}"
                )
            files = [sample / "images" / r["file"] for r in rows]
            try:
                labels = [int(r["class_index"]) for r in rows]
            except (KeyError, TypeError, ValueError) as err:
                raise DatasetNotFoundError(
                    f"{sample / 'labels.csv'} needs an integer class_index column ({err})"
                ) from err
            check_label_range(np.asarray(labels), self.info, sample / "labels.csv")
            return ImageFolderDataset(files, labels, self.info, split)
        raise DatasetNotFoundError(
            f"imagenet: neither {folder} nor {sample / 'labels.csv'} exists. {HOW_TO_GET}"
        )


IMAGENET = register_source(
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
    )
)
