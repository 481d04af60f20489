"""Shared fixtures: the real datasets in ../shared/data (skipped when absent) and a small
trained model on the embedded digits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("UNDERFIRE_SHARED_DATA", REPO.parent / "shared" / "data"))

# One intra-op thread for the whole suite: the tests run tiny models, where a second OpenMP
# thread gains nothing, and on a busy 2-core machine oversubscription made steps up to 60×
# slower. Tests that set threads themselves restore this value.
torch.set_num_threads(1)
# ... and the thread policy's jobs (training takes threads by its size, evaluation by the
# load) keep it: a declared OMP_NUM_THREADS wins over the policy
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (MNIST, Fashion-MNIST and notMNIST usable directly as a root)."""
    if not (SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(
            f"real datasets not found at {SHARED_DATA} (a fresh clone has none; CI provides ../shared/data)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def materialized_data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """../shared/data laid out as torchvision expects (incl. CIFAR-10's binary version)."""
    cache = os.environ.get("UNDERFIRE_MATERIALIZED")
    dest = Path(cache) if cache else tmp_path_factory.mktemp("materialized")
    if not (dest / "cifar-10-batches-bin" / "test_batch.bin").exists():
        subprocess.run(
            [sys.executable, str(shared_data / "materialize.py"), str(dest)],
            check=True,
            capture_output=True,
        )
    return dest


@pytest.fixture(scope="session")
def digits_splits():
    from underfire.data import load_dataset

    return {split: load_dataset("digits", split) for split in ("train", "val", "test")}


@pytest.fixture(scope="session")
def digits_model(digits_splits):
    """A ross-cnn trained on digits (~99% test accuracy, a few seconds). Do not modify it."""
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig, Trainer

    model = model_for_dataset("ross-cnn", "digits")
    Trainer(model, config=TrainConfig(epochs=15, batch_size=64, lr=1e-3, seed=0)).fit(
        digits_splits["train"]
    )
    return model.eval()


@pytest.fixture(scope="session")
def two_conv_digits(digits_splits) -> torch.nn.Module:
    """A digits CNN no underfire default resembles (two convolutions, a max-pool, one linear
    layer), trained for 15 epochs: attacks must not be tuned to the project's own models.
    Session-scoped (trained once per worker); do not modify it."""
    from underfire.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 16, 10),
    )
    Trainer(model, config=TrainConfig(epochs=15, batch_size=64, lr=1e-3, seed=0)).fit(
        digits_splits["train"]
    )
    return model.eval()
