import functools
import importlib
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from underfire.data import DATASETS, load_dataset, splits
from underfire.data.splits import SPLITS, carve


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 500),
    seed=st.integers(0, 10_000),
    train=st.floats(0.1, 0.8),
    val=st.floats(0.05, 0.15),
)
def test_carve_partitions_every_index_exactly_once(n, seed, train, val):
    fractions = {"train": train, "val": val, "test": 1 - train - val}
    parts = [carve(n, s, fractions, seed) for s in ("train", "val", "test")]
    joined = torch.cat(parts).sort().values
    assert torch.equal(joined, torch.arange(n))
    assert abs(len(parts[0]) - round(train * n)) <= 1
    assert torch.equal(parts[1], carve(n, "val", fractions, seed))  # deterministic


# Every data set whose loader carves splits with ``carve`` (its own import, or through
# ``splits.train_and_test_parts``): the loader's module, the splits carved from one source (the
# others are official files), and where its files come from.
SHARED = ("shared_data", "materialized_data")  # fixtures that skip without ../shared/data
CARVED = {
    "digits": ("digits", ("train", "val", "test"), None),
    "mnist": ("idx", ("train", "val"), "shared_data"),
    "fashion-mnist": ("idx", ("train", "val"), "shared_data"),
    "notmnist": ("idx", ("train", "val", "test"), "shared_data"),
    "cifar10": ("cifar", ("train", "val"), "materialized_data"),
    "svhn": ("svhn", ("train", "val"), "synthetic"),
}


def _svhn_files(root: Path) -> None:
    """Synthetic SVHN files (no real copy is available offline): 60 train, 20 test images,
    all distinct, so any leak shows."""
    import scipy.io

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(32, 32, 3, 80), dtype=np.uint8)
    labels = rng.integers(1, 11, size=(80, 1), dtype=np.uint8)
    scipy.io.savemat(root / "train_32x32.mat", {"X": images[..., :60], "y": labels[:60]})
    scipy.io.savemat(root / "test_32x32.mat", {"X": images[..., 60:], "y": labels[60:]})


def _images(x: torch.Tensor) -> list[bytes]:
    """Each image's identity: its pixels quantized to bytes (the sources are 8-bit)."""
    rows = x.mul(255).round().to(torch.uint8).flatten(1).numpy()
    return [row.tobytes() for row in rows]


def _checksums(x: torch.Tensor) -> torch.Tensor:
    """One number per image, to compare images in bulk cheaply."""
    weights = torch.linspace(1.0, 2.0, x[0].numel(), dtype=x.dtype)
    return x.flatten(1) @ weights


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.shared_data) if w in SHARED else n
        for n, (_, _, w) in CARVED.items()
    ],
)
def test_splits_share_no_index_and_no_image(name, request, monkeypatch, tmp_path):
    """train, val and test of every data set that carves its splits: the carved indices
    partition the source, each split holds exactly the source's images at its indices, and
    no image is in two splits unless the source itself repeats it (notMNIST's sample does).

    Fails if a loader leaks samples of one split into another (indices added, swapped or
    taken before the carve), drops or repeats samples, or carves the official test file.
    """
    module_name, carved_splits, where = CARVED[name]
    if where == "synthetic":
        _svhn_files(tmp_path)
        root = tmp_path
    else:
        root = request.getfixturevalue(where) if where else None
    module = importlib.import_module(f"underfire.data.{module_name}")
    # every name the loader may call carve by: its module's import and the splits module's
    carvers = [m for m in (module, splits) if hasattr(m, "carve")]
    indices: dict[str, tuple[int, torch.Tensor]] = {}

    def recorded(n, split, fractions, seed):
        idx = carve(n, split, fractions, seed)
        indices[split] = (n, idx)
        return idx

    for m in carvers:
        monkeypatch.setattr(m, "carve", recorded)
    reader = DATASETS.create(name)
    files: list[tuple[torch.Tensor, torch.Tensor]] = []  # what the loader read, (x, y) a file
    for method in ("_read", "_read_part"):  # read each file once, and keep what was read
        if hasattr(reader, method):
            read = functools.cache(getattr(reader, method))

            def kept(*args, read=read, **kwargs):
                files.append(read(*args, **kwargs))
                return files[-1]

            monkeypatch.setattr(reader, method, kept)
    parts = {s: load_dataset(name, s, root=root) for s in SPLITS}
    assert sorted(indices) == sorted(carved_splits)
    sizes = {size for size, _ in indices.values()}
    assert len(sizes) == 1, f"{name}: splits carved from sources of sizes {sizes}"
    (n,) = sizes
    joined = torch.cat([indices[s][1] for s in carved_splits]).sort().values
    assert torch.equal(joined, torch.arange(n))  # no shared index, none left out
    # the whole source the carved splits come from: the file of n images (digits: no file,
    # so loaded with every index)
    sources = [(x, y) for x, y in files if len(y) == n]
    if not sources:
        for m in carvers:
            monkeypatch.setattr(m, "carve", lambda n, split, fractions, seed: torch.arange(n))
        whole = load_dataset(name, carved_splits[0], root=root)
        sources = [(whole.x, whole.y)]
    source_x, source_y = sources[0]
    source_images, source_sums = _images(source_x), _checksums(source_x)
    images = {}
    for s in SPLITS:
        if s in carved_splits:  # the split holds the source's images at its indices
            idx = indices[s][1]
            assert torch.equal(parts[s].y, source_y[idx])
            torch.testing.assert_close(_checksums(parts[s].x), source_sums[idx])
            images[s] = {source_images[i] for i in idx.tolist()}
        else:
            images[s] = set(_images(parts[s].x))
    repeated = {image for image, count in Counter(source_images).items() if count > 1}
    for a, b in itertools.combinations(SPLITS, 2):
        shared = images[a] & images[b]
        assert len(shared - repeated) == 0, f"{name}: {len(shared)} images in both {a} and {b}"
    if name != "notmnist":  # the only source here that repeats images
        assert not repeated
