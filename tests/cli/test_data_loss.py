"""Failure kind 'data loss': one live run per --out (a lock), finished results never silently
overwritten (train reuses, other commands refuse a different run's results unless --force)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import torch

from tests.cli.conftest import one_line_error, spawn
from underfire.core.errors import OutputLockedError
from underfire.core.io import LOCK_NAME, RunLock

TRAIN = ["train", "--batch-size", "32", "--device", "cpu"]


def test_two_concurrent_train_runs_on_one_out_the_second_refuses(tmp_path, cli):
    out = tmp_path / "run"
    first = spawn(*TRAIN, "--epochs", "400", "--out", str(out), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_NAME).exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.05)
        holder = json.loads((out / LOCK_NAME).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        assert holder["command"].startswith("underfire train") and holder["started"]
        code, _, err = cli(*TRAIN, "--steps", "3", "--out", str(out))
        line = one_line_error(code, err, "is in use by `underfire train", f"pid {first.pid}")
        assert "wait for it to finish" in line
        assert not (out / "train.json").exists()  # the second run wrote nothing
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    dead = spawn("--version", cwd=tmp_path)
    dead.communicate()  # reaped: its pid no longer runs
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "x", "started": "t"})
    )
    with pytest.warns(RuntimeWarning, match="stale lock"), RunLock(tmp_path, "underfire y") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()  # released


def test_lock_of_a_live_process_or_another_host_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "c"})
    )
    with pytest.raises(OutputLockedError, match="in use by `c`"):
        RunLock(tmp_path, "x").acquire()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "command": "c"}))
    with pytest.raises(OutputLockedError, match="no longer runs on elsewhere, delete"):
        RunLock(tmp_path, "x").acquire()


def _child_showing(argv0: bytes, child) -> bool:
    """Wait until /proc shows ``child`` running ``argv0`` (after fork it still shows python)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{child.pid}/cmdline").read_bytes().startswith(argv0):
                return True
        except OSError:
            return False
        time.sleep(0.02)
    return False


def test_lock_of_a_recycled_pid_running_another_program_is_stale(tmp_path):
    import subprocess

    other = subprocess.Popen(["sleep", "30"])
    try:
        if not _child_showing(b"sleep", other):
            pytest.skip("this system's /proc does not show a child's command line")
        (tmp_path / LOCK_NAME).write_text(  # an old lock: no start time recorded
            json.dumps({"pid": other.pid, "host": socket.gethostname(), "command": "c"})
        )
        with pytest.warns(RuntimeWarning, match="stale lock"), RunLock(tmp_path, "x"):
            pass
    finally:
        other.kill()
        other.wait()


def test_lock_of_a_recycled_pid_is_told_apart_by_its_start_time(tmp_path):
    from underfire.core.io import _pid_start_ticks

    mine = _pid_start_ticks(os.getpid())
    if mine is None:
        pytest.skip("this system has no /proc/<pid>/stat to read a start time from")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": "c"}
    # same pid, same start: this very process holds it (a python process, alive)
    (tmp_path / LOCK_NAME).write_text(json.dumps({**record, "pid_start": mine}))
    with pytest.raises(OutputLockedError, match="in use by `c`"):
        RunLock(tmp_path, "x").acquire()
    # same pid, another start: the pid was reused after the holder died
    (tmp_path / LOCK_NAME).write_text(json.dumps({**record, "pid_start": mine - 1}))
    with pytest.warns(RuntimeWarning, match="stale lock"), RunLock(tmp_path, "x") as lock:
        assert json.loads(lock.path.read_text())["pid_start"] == mine


def test_lock_is_released_on_error(tmp_path, cli):
    out = tmp_path / "run"
    code, _, err = cli(
        *TRAIN, "--dataset", "mnist", "--data-root", str(tmp_path), "--out", str(out)
    )
    one_line_error(code, err, "train-images-idx3-ubyte")
    assert not (out / LOCK_NAME).exists()


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_train_rerun_reuses_a_finished_run_and_force_retrains(tmp_path, cli):
    out = tmp_path / "run"
    args = [*TRAIN, "--steps", "4", "--out", str(out)]
    assert cli(*args)[0] == 0
    summary = (out / "train.json").read_bytes()
    model = (out / "model.pt").read_bytes()
    code, stdout, err = cli(*args)
    assert code == 0 and "reusing it, nothing trained" in err and "is unchanged" in err
    assert "test accuracy" in stdout
    assert (out / "train.json").read_bytes() == summary  # not rewritten (no "0 s" summary)
    assert (out / "model.pt").read_bytes() == model
    assert json.loads(summary)["train_seconds"] > 0
    # other settings: refused, nothing touched
    code, _, err = cli(*TRAIN, "--steps", "5", "--out", str(out))
    one_line_error(code, err, "different training run", "--force")
    assert (out / "model.pt").read_bytes() == model
    # --force: retrained from scratch with the new settings
    code, _, err = cli(*TRAIN, "--steps", "5", "--out", str(out), "--force")
    assert code == 0 and "--force: deleting" in err
    again = json.loads((out / "train.json").read_text())
    assert again["steps"] == 5 and again["resumed_from_step"] == 0


def test_attack_refuses_to_replace_a_different_runs_results_unless_forced(
    tmp_path, cli, trained_digits
):
    out = tmp_path / "attack"
    base = ["attack", "--checkpoint", str(trained_digits), "--attack", "fgsm", "--n", "16"]
    base += ["--device", "cpu", "--out", str(out)]
    assert cli(*base, "--eps", "0.1")[0] == 0
    results = (out / "results.json").read_bytes()
    code, _, err = cli(*base, "--eps", "0.2")
    one_line_error(code, err, "results.json holds the result of a different `underfire attack`")
    assert (out / "results.json").read_bytes() == results
    assert cli(*base, "--eps", "0.1")[0] == 0  # the same run again: recomputed, same numbers
    assert json.loads((out / "results.json").read_text()) == json.loads(results)
    assert cli(*base, "--eps", "0.2", "--force")[0] == 0
    assert json.loads((out / "results.json").read_text())["eps"] == [0.2]
    # another command whose files collide (train writes no results.json, demo does)
    code, _, err = cli("demo", "--out", str(out), "--epochs", "1", "--sections", "classifier")
    one_line_error(code, err, "a different `underfire attack` run")


@pytest.mark.parametrize("kind", ["file", "parent-file", "unwritable"])
def test_out_that_is_a_file_or_not_writable(tmp_path, cli, kind):
    (tmp_path / "f").write_text("x")
    out = {
        "file": tmp_path / "f",
        "parent-file": tmp_path / "f" / "run",
        "unwritable": "/proc/underfire-test/run",  # no one, not even root, creates folders here
    }[kind]
    code, _, err = cli(*TRAIN, "--steps", "2", "--out", str(out))
    one_line_error(code, err, "--out", "choose")
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_out_in_a_read_only_folder(tmp_path, cli, monkeypatch):
    """--out inside /proc, where nobody, root included (as in CI), can create a folder: one
    line naming the folder and asking for a writable one, exit 2, nothing written.

    Fails if the output folder's error is not turned into that line (a traceback, or a bare
    OS message without the fix), or if the command writes anything anyway.
    """
    monkeypatch.chdir(tmp_path)  # anything written to the working folder would show here
    out = Path("/proc") / f"underfire-test-{os.getpid()}" / "run"
    code, _, err = cli(*TRAIN, "--steps", "2", "--out", str(out))
    one_line_error(code, err, str(out), "choose a writable folder")
    assert not out.parent.exists()
    assert list(tmp_path.iterdir()) == []


def _diagnose(checkpoint: Path, out: Path) -> list[str]:
    return [
        "diagnose",
        "--checkpoint",
        str(checkpoint),
        "--attack",
        "fgsm",
        "--n",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def _train_interpretgan(checkpoint: Path, out: Path) -> list[str]:
    return [
        "train-interpretgan",
        "--checkpoint",
        str(checkpoint),
        "--layers",
        "net.features.pool1",
        "--batch-size",
        "8",
        "--width",
        "4",
        "--eval-n",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


@pytest.mark.parametrize("command", ["diagnose", "train-interpretgan"])
def test_diagnose_and_train_interpretgan_refuse_an_out_held_by_a_live_run(
    tmp_path, cli, trained_digits, command
):
    out = tmp_path / "run"
    argv = {"diagnose": _diagnose, "train-interpretgan": _train_interpretgan}[command]
    argv_extra = ["--eps", "0.1"] if command == "diagnose" else ["--steps", "2"]
    with RunLock(out, "underfire other"):  # a live holder: this process
        code, _, err = cli(*argv(trained_digits, out), *argv_extra)
        one_line_error(code, err, "is in use by `underfire other`", "choose another --out")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    assert cli(*argv(trained_digits, out), *argv_extra)[0] == 0  # free again
    assert not (out / LOCK_NAME).exists()


def test_diagnose_refuses_to_replace_a_different_runs_results_unless_forced(
    tmp_path, cli, trained_digits
):
    out = tmp_path / "diagnose"
    base = _diagnose(trained_digits, out)
    assert cli(*base, "--eps", "0.1")[0] == 0
    results = (out / "results.json").read_bytes()
    report = (out / "report.html").read_bytes()
    code, _, err = cli(*base, "--eps", "0.2")
    one_line_error(code, err, "holds the result of a different `underfire diagnose`", "--force")
    assert (out / "results.json").read_bytes() == results
    assert (out / "report.html").read_bytes() == report
    assert cli(*base, "--eps", "0.1")[0] == 0  # the same run again: recomputed, same numbers
    assert json.loads((out / "results.json").read_text()) == json.loads(results)
    assert cli(*base, "--eps", "0.2", "--force")[0] == 0
    assert json.loads((out / "results.json").read_text())["attack"]["eps"] == 0.2
    # another command whose files collide: attack also writes results.json
    attack = ["attack", "--checkpoint", str(trained_digits), "--attack", "fgsm", "--n", "16"]
    code, _, err = cli(*attack, "--eps", "0.1", "--device", "cpu", "--out", str(out))
    one_line_error(code, err, "a different `underfire diagnose` run")


def test_train_interpretgan_rerun_resumes_other_settings_refused_unless_forced(
    tmp_path, cli, trained_digits
):
    out = tmp_path / "gan"
    base = _train_interpretgan(trained_digits, out)
    assert cli(*base, "--steps", "2")[0] == 0
    weights = _weights_gan(out)
    summary = json.loads((out / "interpretgan.json").read_text())
    # the same command again: the finished checkpoint is resumed (nothing trained)
    assert cli(*base, "--steps", "2")[0] == 0
    assert _same_weights(_weights_gan(out), weights)
    assert json.loads((out / "interpretgan.json").read_text())["history"] == summary["history"]
    # other settings: refused, nothing touched
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, _, err = cli(*base, "--steps", "3")
    one_line_error(
        code, err, "holds the result of a different `underfire train-interpretgan`", "--force"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    # --force: trained from scratch with the new settings, even ones the checkpoint cannot
    # resume (another width)
    code, _, err = cli(*base, "--steps", "3", "--width", "6", "--force")
    assert code == 0 and "--force: deleting" in err, err
    again = json.loads((out / "interpretgan.json").read_text())
    assert again["config"]["steps"] == 3 and again["config"]["width"] == 6


def _weights_gan(out: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(out / "interpretgan.pt", weights_only=True)
    return {
        f"{layer}.{k}": v
        for layer, g in payload["generators"].items()
        for k, v in g["state_dict"].items()
    }


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
