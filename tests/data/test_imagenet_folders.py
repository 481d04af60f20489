"""ImageNet class folders keep their ILSVRC-2012 class indices, whatever subset is present."""

from __future__ import annotations

import csv

import pytest

from underfire.core.errors import DatasetNotFoundError
from underfire.data import load_dataset
from underfire.data.imagenet import wnid_index


def _folders(root, wnids):
    from PIL import Image

    for wnid in wnids:
        folder = root / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        Image.new("RGB", (230, 230), (0, 128, 255)).save(folder / "a.JPEG", format="PNG")


def test_a_few_class_folders_keep_their_imagenet_indices(tmp_path):
    # tench (0), goldfish (1), castle (483), toilet tissue (999): not relabelled 0, 1, 2, 3
    _folders(tmp_path, ["n15075141", "n01440764", "n02980441", "n01443537"])
    data = load_dataset("imagenet", "val", root=tmp_path)
    assert data.y.tolist() == [0, 1, 483, 999]
    assert [f.parent.name for f in data.files] == [
        "n01440764",
        "n01443537",
        "n02980441",
        "n15075141",
    ]


def test_a_class_folder_that_is_not_a_wnid_is_refused(tmp_path):
    _folders(tmp_path, ["n01440764", "cats"])
    with pytest.raises(DatasetNotFoundError, match="not ILSVRC-2012 wnids \\(cats\\)"):
        load_dataset("imagenet", "val", root=tmp_path)


def test_the_wnid_index_is_the_sorted_order_of_the_1000_classes():
    index = wnid_index()
    assert len(index) == 1000 and sorted(index, key=index.__getitem__) == sorted(index)


@pytest.mark.shared_data
def test_the_wnid_index_agrees_with_the_imagenet_sample(shared_data):
    with open(shared_data / "imagenet-sample" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["wnid"]: int(r["class_index"]) for r in rows} == wnid_index()
