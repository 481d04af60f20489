"""Failure kind 'not reproducible': --seed seeds the initialization, the same command gives
the same weights, and SIGKILL + re-run gives the weights of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.cli.conftest import cli_env, run_cli, spawn

TRAIN = ["train", "--batch-size", "32", "--device", "cpu", "--lr-schedule", "cosine"]


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_same_command_same_seed_same_weights(tmp_path, cli):
    args = [*TRAIN, "--steps", "6", "--seed", "3"]
    for name in ("a", "b"):
        result = run_cli(*args, "--out", str(tmp_path / name), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    a, b = _weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt")
    assert _same(a, b)
    # and the seed matters: the initialization is drawn from it
    assert cli(*args[:-1], "4", "--out", str(tmp_path / "c"))[0] == 0
    assert not _same(a, _weights(tmp_path / "c" / "model.pt"))
    assert cli(*args[:-1], "3", "--steps", "1", "--out", str(tmp_path / "d"))[0] == 0


def test_initialization_is_seeded_even_before_the_first_step(tmp_path, cli):
    # two one-step runs differing only in the output folder: identical weights
    for name in ("a", "b"):
        assert cli(*TRAIN, "--steps", "1", "--seed", "5", "--out", str(tmp_path / name))[0] == 0
    assert _same(_weights(tmp_path / "a" / "model.pt"), _weights(tmp_path / "b" / "model.pt"))


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_weights(tmp_path):
    args = [*TRAIN, "--steps", "100", "--checkpoint-every", "5", "--seed", "1"]
    reference = run_cli(*args, "--out", str(tmp_path / "ref"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    victim = spawn(*args, "--out", str(out), cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (out / "model.pt").exists():
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    state = torch.load(out / "model.pt", weights_only=True)["trainer_state"]
    assert not state["finished"] and 5 <= state["step"] < 100, state["step"]

    again = run_cli(*args, "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "stale lock" in again.stderr  # the killed run's lock, taken over
    summary = (out / "train.json").read_text()
    assert f'"resumed_from_step": {state["step"]}' in summary
    assert _same(_weights(tmp_path / "ref" / "model.pt"), _weights(out / "model.pt"))


# `underfire train` with a hook on the trainer: after step 5 it says so on stderr and waits
# for Ctrl-C, so the signal lands after a known step on any machine, however fast.
_PAUSED_TRAIN = """
import sys, time
import underfire.train as train
from underfire.cli import main

received = []
handle = train._DeferredInterrupt._handle


def record(self, signum, frame):
    received.append(signum)
    handle(self, signum, frame)


def on_step(step, loss):
    if step == 5:
        print("[test] step 5 done", file=sys.stderr, flush=True)
        while not received:
            time.sleep(0.01)


init = train.Trainer.__init__


def hooked_init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.on_step = on_step


train._DeferredInterrupt._handle = record
train.Trainer.__init__ = hooked_init
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_saves_and_the_rerun_resumes(tmp_path):
    """Ctrl-C, sent once step 5 is reported done (no sleep), saves step 5; the rerun
    resumes there and ends with the weights of an uninterrupted run.

    Fails if Ctrl-C is not turned into a checkpoint between steps (no model.pt, or another
    step saved), leaves the lock, prints a traceback, or if resuming is not exact.
    """
    from underfire.core.io import LOCK_NAME

    args = [*TRAIN, "--steps", "300", "--checkpoint-every", "100000", "--seed", "2"]
    out = tmp_path / "interrupted"
    victim = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_TRAIN, *args, "--out", str(out)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = [victim.stderr.readline() for _ in range(2)]
    assert lines[0].startswith("[train] digits"), lines
    assert lines[1] == "[test] step 5 done\n", lines
    victim.send_signal(signal.SIGINT)
    _, err = victim.communicate(timeout=120)
    assert victim.returncode == 130, err
    assert "interrupted; run the same command again to resume" in err and "Traceback" not in err
    state = torch.load(out / "model.pt", weights_only=True)["trainer_state"]
    assert not state["finished"] and state["step"] == 5
    assert not (out / LOCK_NAME).exists()

    again = run_cli(*args, "--out", str(out), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert '"resumed_from_step": 5' in (out / "train.json").read_text()
    reference = run_cli(*args, "--out", str(tmp_path / "ref"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    assert _same(_weights(tmp_path / "ref" / "model.pt"), _weights(out / "model.pt"))
