"""Training under ``torchrun`` (gloo, two CPU processes) equals training in one process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.distributed import tiny_training as tiny
from underfire.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10  # 2.5 epochs of 100 images: full batches, the last smaller one, a new shuffle
#: float64, and the only difference is the order of the sums (two half-batch gradients
#: averaged by DDP instead of one sum over the batch): rounding of order 1e-16 per step
ATOL = 1e-10


def torchrun(*args: str, nproc: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node NPROC ARGS`` with this checkout's sources."""
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
        "UNDERFIRE_DIST_TIMEOUT": "60",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={nproc}", *args]
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def same_weights(model: torch.nn.Module, saved: dict) -> None:
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=ATOL, msg=name)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """One torchrun launch for every check (starting one costs seconds)."""
    out = tmp_path_factory.mktemp("ddp")
    tiny.interrupted("gradreg", STEPS, out / "one.ckpt")  # one process, left unfinished
    done = torchrun("tests/distributed/tiny_training.py", str(STEPS), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", tiny.OBJECTIVES)
def test_two_ranks_train_the_weights_of_one_process(two_ranks: Path, name: str) -> None:
    """Same global batch, same data order: the same losses and weights, for every objective
    (gradient regularization backpropagates twice through DDP)."""
    torch.set_num_threads(1)
    model, result = tiny.train(name, STEPS)
    saved = torch.load(two_ranks / f"{name}.pt")
    assert saved["steps"] == result.steps == STEPS
    losses = [r["train_loss"] for r in result.history]
    torch.testing.assert_close(saved["losses"], losses, rtol=0, atol=ATOL)
    same_weights(model, saved["state"])


@pytest.mark.slow
def test_a_run_resumes_with_another_number_of_ranks(two_ranks: Path) -> None:
    """Begun by one process and finished by two, or begun by two and finished by one: the
    weights of an uninterrupted run."""
    torch.set_num_threads(1)
    reference, _ = tiny.train("gradreg", STEPS)
    resumed_by_two = torch.load(two_ranks / "resumed.pt")
    assert resumed_by_two["resumed_from"] == tiny.EVERY
    same_weights(reference, resumed_by_two["state"])
    model, result = tiny.train("gradreg", STEPS, two_ranks / "two.ckpt")
    assert result.resumed_from == tiny.EVERY  # rank 0 saved it; the ranks stopped together
    same_weights(reference, model.state_dict())


def test_python_m_underfire_is_the_command_line() -> None:
    """``python -m underfire`` (what torchrun and schedulers call) runs the command line."""
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "underfire", "--version"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    from underfire import __version__

    assert __version__ in done.stdout


@pytest.mark.slow
def test_a_dead_rank_fails_the_job_and_the_checkpoint_resumes(tmp_path: Path) -> None:
    """Rank 1 dies after step 4: the job exits non-zero (no hang), the checkpoint of step 3
    stays valid, and a rerun resumes from it to the weights of an uninterrupted run."""
    torch.set_num_threads(1)
    started = time.monotonic()
    done = torchrun("tests/distributed/tiny_training.py", "die", str(tmp_path), timeout=120)
    assert done.returncode != 0
    assert time.monotonic() - started < 100
    assert "went on without" not in done.stderr
    assert read_checkpoint(tmp_path / "die.ckpt")["trainer_state"]["step"] == tiny.EVERY
    model, result = tiny.train("gradreg", STEPS, tmp_path / "die.ckpt")
    assert result.resumed_from == tiny.EVERY
    reference, _ = tiny.train("gradreg", STEPS)
    same_weights(reference, model.state_dict())
