"""``torchrun -m underfire train``: two processes train one model; rank 0 alone writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.test_training import ROOT, torchrun
from underfire.checkpoint import load_checkpoint

TRAIN = ["-m", "underfire", "train", "--dataset", "digits", "--device", "cpu", "--steps", "6"]


@pytest.mark.slow
def test_train_under_torchrun_writes_once_and_one_process_reuses_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = torchrun(*TRAIN, "--batch-size", "32", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 1  # printed by rank 0 only
    summary = json.loads((out / "train.json").read_text())
    assert summary["steps"] == 6
    assert load_checkpoint(out / "model.pt").meta["steps"] == 6
    # the same command in one process finds the finished run: same global batch, same run
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    again = subprocess.run(
        [sys.executable, *TRAIN, "--batch-size", "32", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "reusing it, nothing trained" in again.stderr


@pytest.mark.slow
def test_a_batch_the_ranks_cannot_share_is_refused_in_one_line(tmp_path: Path) -> None:
    done = torchrun(*TRAIN, "--batch-size", "33", "--out", str(tmp_path / "run"))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [
        "underfire train: error: the batch size 33 is the global batch, shared by the 2 "
        "processes, and must be divisible by 2; pick a multiple of 2"
    ]


@pytest.mark.slow
def test_two_processes_reach_the_accuracy_of_one(tmp_path: Path) -> None:
    """Digits' default budget (15 epochs of 64): batch norm normalizes each rank's half of a
    batch, so the runs differ, but the test accuracy is the same within 1 point."""
    base = ["-m", "underfire", "train", "--dataset", "digits", "--device", "cpu"]
    two = torchrun(*base, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, *base, "--out", str(tmp_path / "one")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    accuracy = {
        name: json.loads((tmp_path / name / "train.json").read_text())["test_accuracy"]
        for name in ("one", "two")
    }
    assert accuracy["one"] > 0.9
    assert abs(accuracy["two"] - accuracy["one"]) <= 0.01, accuracy
