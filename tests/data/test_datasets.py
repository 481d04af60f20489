import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from underfire.core.registry import UnknownNameError
from underfire.data import (
    DatasetNotFoundError,
    dataset_names,
    dataset_status,
    load_dataset,
    read_cifar_bin,
)


def test_names():
    assert set(dataset_names()) == {
        "digits",
        "mnist",
        "fashion-mnist",
        "notmnist",
        "cifar10",
        "svhn",
        "imagenet",
    }


def test_digits_splits_are_disjoint_deterministic_and_cover_everything():
    """The three splits are the 1797 images of scikit-learn's digits, each exactly once.

    Fails if an image of one split leaks into another (e.g. part of test added to train),
    if an image is dropped or repeated, or if the split ignores its seed.
    """
    from sklearn.datasets import load_digits

    parts = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [1258, 180, 359]
    for d in parts.values():
        assert d.x.dtype == torch.float32 and d.x.shape[1:] == (1, 8, 8)
        assert d.x.min() >= 0 and d.x.max() <= 1 and d.y.dtype == torch.int64
    images = {s: {_key(row) for row in p.x} for s, p in parts.items()}
    assert all(len(images[s]) == len(parts[s]) for s in parts)  # no image twice in a split
    assert len(images["train"] & images["val"]) == 0
    assert len(images["train"] & images["test"]) == 0
    assert len(images["val"] & images["test"]) == 0
    bunch = load_digits()
    source = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0)
    assert images["train"] | images["val"] | images["test"] == {_key(row) for row in source}
    labelled = {
        (_key(row), int(c)) for p in parts.values() for row, c in zip(p.x, p.y, strict=True)
    }
    assert labelled == {(_key(row), int(c)) for row, c in zip(source, bunch.target, strict=True)}
    again = load_dataset("digits", "test")
    assert torch.equal(again.x, parts["test"].x)
    other_seed = load_dataset("digits", "test", seed=1)
    assert not torch.equal(other_seed.y, parts["test"].y)


def _key(image: torch.Tensor) -> bytes:
    """An image's identity: its pixels quantized to bytes (the sources are 8-bit or 4-bit)."""
    return bytes(image.mul(255).round().to(torch.uint8).flatten().tolist())


def test_unknown_name_and_split():
    with pytest.raises(UnknownNameError, match="choose one of: cifar10, digits"):
        load_dataset("mnsit")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load_dataset("digits", "valid")


_IDX_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize(
    ("name", "files", "fix"),
    [
        ("mnist", _IDX_TEST_FILES, "--download"),
        ("fashion-mnist", _IDX_TEST_FILES, "--download"),
        ("notmnist", _IDX_TEST_FILES, "notMNIST-to-MNIST"),
        ("cifar10", ("test_batch.bin", "cifar-10-batches-bin"), "--download"),
        ("svhn", ("test_32x32.mat",), "--download"),
        ("imagenet", ("imagenet/test", "imagenet-sample/labels.csv"), "ILSVRC-2012"),
    ],
)
def test_missing_data_names_the_files_and_the_fix(name, files, fix, tmp_path):
    """Fails if the message leaves out a missing file's name, the folder searched or the fix
    (the download option or where to get the files)."""
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, "test", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    for file in files:
        assert file in message
    assert fix in message


def test_malformed_idx_is_reported(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    header = (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(100))  # two images promised, 100 bytes given
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write((2049).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2))
    with pytest.raises(DatasetNotFoundError, match="header says 1568"):
        load_dataset("mnist", "test", root=tmp_path)


def _write_cifar_bin(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    path.write_bytes(np.concatenate([labels[:, None].astype(np.uint8), planes], 1).tobytes())


def test_cifar_binary_reader_on_synthetic_records(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5])
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    _write_cifar_bin(folder / "test_batch.bin", images, labels)
    got_images, got_labels = read_cifar_bin(folder / "test_batch.bin")
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    data = load_dataset("cifar10", "test", root=tmp_path)
    assert data.x.shape == (5, 3, 32, 32)
    # pixel (row 2, col 7) channel G of image 1 lands in NCHW at [1, 1, 2, 7]
    assert data.x[1, 1, 2, 7].item() == pytest.approx(images[1, 2, 7, 1] / 255)
    (folder / "test_batch.bin").write_bytes(bytes(3000))
    with pytest.raises(DatasetNotFoundError, match="whole number"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_status_reports_availability(tmp_path):
    status = {s.name: s.available for s in dataset_status(tmp_path)}
    assert status["digits"] and not status["mnist"]


@pytest.mark.shared_data
def test_mnist_from_shared_data(shared_data):
    test = load_dataset("mnist", "test", root=shared_data)
    train = load_dataset("mnist", "train", root=shared_data)
    val = load_dataset("mnist", "val", root=shared_data)
    assert len(test) == 10000 and len(train) == 54000 and len(val) == 6000
    assert test.y[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(test.y).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert abs(train.x.mean().item() - 0.1307) < 2e-3


@pytest.mark.shared_data
def test_fashion_and_notmnist_from_shared_data(shared_data):
    fashion = load_dataset("fashion-mnist", "test", root=shared_data)
    assert len(fashion) == 10000 and torch.bincount(fashion.y).tolist() == [1000] * 10
    parts = [load_dataset("notmnist", s, root=shared_data) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [7000, 1000, 2000]
    assert parts[0].classes[0] == "A"


@pytest.mark.shared_data
def test_cifar10_through_the_binary_version(materialized_data):
    assert (materialized_data / "cifar-10-batches-bin" / "data_batch_1.bin").exists()
    test = load_dataset("cifar10", "test", root=materialized_data)
    train = load_dataset("cifar10", "train", root=materialized_data)
    assert test.x.shape == (10000, 3, 32, 32) and len(train) == 45000
    assert torch.bincount(test.y).tolist() == [1000] * 10
    means = torch.cat([train.x, load_dataset("cifar10", "val", root=materialized_data).x]).mean(
        (0, 2, 3)
    )
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-3)


@pytest.mark.shared_data
def test_imagenet_sample(shared_data):
    data = load_dataset("imagenet", "test", root=shared_data)
    assert len(data) == 1000
    x, y = data.tensors(3)
    assert x.shape == (3, 3, 224, 224) and y.tolist() == [0, 1, 2]
    assert 0 <= x.min() and x.max() <= 1
    with pytest.raises(DatasetNotFoundError, match="only a 'test' split"):
        load_dataset("imagenet", "train", root=shared_data)


def test_svhn_mat_reader_on_synthetic_file(tmp_path):
    import scipy.io

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)  # SVHN stores (H, W, C, N)
    labels = np.array([[10], [1], [2], [10]], dtype=np.uint8)  # the digit 0 is stored as 10
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": images, "y": labels})
    data = load_dataset("svhn", "test", root=tmp_path)
    assert data.y.tolist() == [0, 1, 2, 0]
    assert data.x.shape == (4, 3, 32, 32)
    assert data.x[2, 0, 5, 9].item() == pytest.approx(images[5, 9, 0, 2] / 255)


def test_imagenet_class_folder_layout(tmp_path):
    from PIL import Image

    for wnid, color in (("n01440764", (255, 0, 0)), ("n01443537", (0, 0, 255))):
        folder = tmp_path / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        Image.new("RGB", (300, 260), color).save(folder / "a.JPEG", format="PNG")
    data = load_dataset("imagenet", "val", root=tmp_path)
    assert len(data) == 2 and data.y.tolist() == [0, 1]
    x, _ = data[1]
    assert x.shape == (3, 224, 224) and x[2].mean() > 0.99 and x[0].mean() < 0.01
    (tmp_path / "imagenet" / "val" / "n01443537" / "a.JPEG").write_bytes(b"broken")
    with pytest.raises(DatasetNotFoundError, match="not a readable image"):
        data[1]
