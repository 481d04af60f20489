"""Every file a command writes is protected, not only --out: `train --checkpoint` is held like
--out, a checkpoint of another run is refused unless --force, --force deletes only underfire
checkpoints; damaged run records give one line, never a traceback."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch

from tests.cli.conftest import one_line_error, spawn
from underfire.core.io import LOCK_NAME
from underfire.core.outputs import RECORD_NAME

TRAIN = ["train", "--batch-size", "32", "--device", "cpu"]


def test_two_train_runs_sharing_a_checkpoint_the_second_refuses_while_the_first_runs(tmp_path, cli):
    shared = tmp_path / "shared.pt"
    lock = tmp_path / f".shared.pt{LOCK_NAME}"
    first = spawn(
        *TRAIN,
        "--epochs",
        "400",
        "--out",
        str(tmp_path / "a"),
        "--checkpoint",
        str(shared),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while not lock.exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run never locked its checkpoint"
            time.sleep(0.05)
        second = tmp_path / "b"
        code, _, err = cli(
            *TRAIN, "--steps", "3", "--out", str(second), "--checkpoint", str(shared)
        )
        line = one_line_error(code, err, f"{shared} is in use by `underfire train", str(first.pid))
        assert "choose another --checkpoint" in line
        assert not (second / "train.json").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the first run is gone: its lock is stale, taken over with a warning
    argv = [*TRAIN, "--steps", "3", "--out", str(tmp_path / "c"), "--checkpoint", str(shared)]
    code, _, err = cli(*argv, "--force")
    assert code == 0 and "taking over the stale lock" in err
    assert not lock.exists()


def test_a_checkpoint_outside_out_of_a_run_with_other_settings_is_refused_unless_forced(
    tmp_path, cli
):
    shared = tmp_path / "models" / "m.pt"
    assert (
        cli(*TRAIN, "--steps", "3", "--out", str(tmp_path / "a"), "--checkpoint", str(shared))[0]
        == 0
    )
    before = shared.read_bytes()
    code, _, err = cli(
        *TRAIN, "--steps", "4", "--out", str(tmp_path / "b"), "--checkpoint", str(shared)
    )
    one_line_error(code, err, "different training run", "--force")
    assert shared.read_bytes() == before and not (tmp_path / "b" / "train.json").exists()
    code, _, err = cli(
        *TRAIN, "--steps", "4", "--out", str(tmp_path / "b"), "--checkpoint", str(shared), "--force"
    )
    assert code == 0 and f"--force: deleting {shared}" in err
    assert torch.load(shared, weights_only=True)["meta"]["steps"] == 4
    assert not shared.with_name(f".m.pt{LOCK_NAME}").exists()  # released


def test_a_checkpoint_of_another_dataset_is_refused(tmp_path, cli):
    shared = tmp_path / "m.pt"
    assert (
        cli(*TRAIN, "--steps", "3", "--out", str(tmp_path / "a"), "--checkpoint", str(shared))[0]
        == 0
    )
    payload = torch.load(shared, weights_only=True)
    payload["meta"]["dataset"] = "notmnist"
    from underfire.checkpoint import checksum

    payload["checksum"]["digest"] = checksum(payload)
    torch.save(payload, shared)
    code, _, err = cli(
        *TRAIN, "--steps", "3", "--out", str(tmp_path / "b"), "--checkpoint", str(shared)
    )
    one_line_error(code, err, "was trained on 'notmnist', not 'digits'", "--force")


@pytest.mark.parametrize("force", [False, True])
def test_force_never_deletes_a_file_that_is_not_a_checkpoint(tmp_path, cli, force):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    argv = [*TRAIN, "--steps", "3", "--out", str(tmp_path / "a"), "--checkpoint", str(notes)]
    code, _, err = cli(*argv, *(["--force"] if force else []))
    one_line_error(code, err, f"--checkpoint {notes} is not an underfire checkpoint")
    assert notes.read_text() == "my notes"
    assert not (tmp_path / "a" / "train.json").exists()


def test_force_never_deletes_a_distillation_teacher_path_that_is_not_a_checkpoint(tmp_path, cli):
    student = tmp_path / "m.pt"
    assert (
        cli(*TRAIN, "--steps", "3", "--out", str(tmp_path / "a"), "--checkpoint", str(student))[0]
        == 0
    )
    teacher = tmp_path / "m.teacher.pt"
    teacher.write_text("not a model")
    argv = [*TRAIN, "--steps", "4", "--out", str(tmp_path / "a"), "--checkpoint", str(student)]
    code, _, err = cli(*argv, "--defense", "distillation", "--force")
    one_line_error(code, err, f"{teacher} is not an underfire checkpoint")
    assert teacher.read_text() == "not a model" and student.exists()  # nothing deleted


@pytest.mark.parametrize(
    "record",
    [
        {"results.json": "hand-edited"},
        {"results.json": {"run": "hand-edited", "finished": None}},
        "not json at all",
    ],
)
def test_attack_with_a_damaged_run_record_gives_one_line(tmp_path, cli, trained_digits, record):
    out = tmp_path / "attack"
    argv = ["attack", "--checkpoint", str(trained_digits), "--attack", "fgsm", "--n", "8"]
    argv += ["--device", "cpu", "--eps", "0.1", "--out", str(out)]
    assert cli(*argv)[0] == 0
    results = (out / "results.json").read_bytes()
    text = record if isinstance(record, str) else json.dumps(record)
    (out / RECORD_NAME).write_text(text)
    code, _, err = cli(*argv)
    one_line_error(code, err, "is damaged", "--force", str(out / RECORD_NAME))
    assert (out / "results.json").read_bytes() == results
    assert cli(*argv, "--force")[0] == 0
    assert cli(*argv)[0] == 0  # the record was rewritten: the same run is recognised again


def test_a_lock_file_with_garbage_gives_one_line(tmp_path, cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("\x00garbage")
    code, _, err = cli(*TRAIN, "--steps", "3", "--out", str(out))
    one_line_error(code, err, "cannot be read", f"delete {out / LOCK_NAME}")
