"""Output protection in the library (the Python API gets what the CLI gets): one live run per
folder or file, another run's results refused unless forced, damaged records and locks
refused with one clear message."""

from __future__ import annotations

import json
import os
import socket

import pytest

from underfire.core.errors import OutputConflictError, OutputLockedError, UnderfireError
from underfire.core.io import LOCK_NAME, RunLock
from underfire.core.outputs import RECORD_NAME, guard_output, lock_file, read_records


def _write(out, name="results.json", **arguments):
    with guard_output(out, command="audit", arguments=arguments, results=[name]) as folder:
        (folder / name).write_text(json.dumps(arguments))


def test_a_folder_locked_by_a_live_run_is_refused(tmp_path):
    with (
        RunLock(tmp_path, "underfire audit --out x"),
        pytest.raises(OutputLockedError, match="in use by `underfire audit --out x`"),
    ):
        _write(tmp_path, eps=0.1)
    assert not (tmp_path / "results.json").exists()


def test_another_runs_result_is_refused_unless_forced(tmp_path):
    _write(tmp_path, eps=0.1)
    with pytest.raises(OutputConflictError, match="a different `underfire audit` run") as err:
        _write(tmp_path, eps=0.2)
    assert "force=True" in str(err.value) and "--force" not in str(err.value)
    assert isinstance(err.value, FileExistsError) and isinstance(err.value, UnderfireError)
    assert json.loads((tmp_path / "results.json").read_text()) == {"eps": 0.1}
    _write(tmp_path, eps=0.1)  # the same run again is allowed (it recomputes or resumes)
    with guard_output(
        tmp_path, command="audit", arguments={"eps": 0.2}, results=["results.json"], force=True
    ):
        pass
    records, damage = read_records(tmp_path)
    assert damage is None and records["results.json"]["run"]["arguments"] == {"eps": 0.2}
    assert records["results.json"]["finished"]


def test_a_result_of_another_command_is_refused(tmp_path):
    _write(tmp_path, eps=0.1)
    with (
        pytest.raises(OutputConflictError, match="different `underfire audit` run"),
        guard_output(tmp_path, command="demo", arguments={}, results=["results.json"]),
    ):
        pass


def test_an_interrupted_run_is_named_and_the_lock_released_on_error(tmp_path):
    with (
        pytest.raises(RuntimeError, match="boom"),
        guard_output(tmp_path, command="audit", arguments={"eps": 0.1}, results=["r.json"]),
    ):
        (tmp_path / "r.json").write_text("{}")
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    with (
        pytest.raises(OutputConflictError, match="an interrupted `underfire audit` run"),
        guard_output(tmp_path, command="audit", arguments={"eps": 0.3}, results=["r.json"]),
    ):
        pass


def test_arguments_with_tuples_and_paths_match_their_own_record(tmp_path):
    arguments = {"eps": (0.1, 0.2), "data": tmp_path / "d"}
    for _ in range(2):
        with guard_output(tmp_path, command="x", arguments=arguments, results=["r"]) as out:
            (out / "r").write_text("1")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"results.json": "a string"}', "entry is a str"),
        ('{"results.json": {"run": "a string", "finished": null}}', '"run" is a str'),
        ('{"results.json": {"run": {"arguments": {}}}}', "names no command"),
        ("this is not json", "not JSON"),
        ("[1, 2]", "JSON list"),
    ],
)
def test_a_damaged_record_refuses_with_one_clear_message_unless_forced(tmp_path, content, needle):
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / RECORD_NAME).write_text(content)
    with pytest.raises(OutputConflictError) as err:
        _write(tmp_path, eps=0.1)
    message = str(err.value)
    assert needle in message and "damaged" in message and "force=True" in message
    assert str(tmp_path / RECORD_NAME) in message
    _write_forced = guard_output(
        tmp_path, command="audit", arguments={"eps": 0.1}, results=["results.json"], force=True
    )
    with _write_forced:
        pass
    records, damage = read_records(tmp_path)
    assert damage is None and records["results.json"]["run"]["command"] == "audit"
    _write(tmp_path, eps=0.1)  # the record is whole again: the same run is accepted


def test_a_damaged_record_does_not_matter_when_no_result_exists(tmp_path):
    (tmp_path / RECORD_NAME).write_text("garbage")
    _write(tmp_path, eps=0.1)
    assert read_records(tmp_path)[1] is None


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("garbage", "cannot be read"),
        ("[1]", "cannot be read"),
        ('{"pid": "12", "host": "h"}', "its pid is '12'"),
        ('{"pid": 100000000000000000000000, "host": "h"}', "its pid is 1000"),
        ('{"pid": true, "host": "h"}', "its pid is True"),
        ('{"pid": 5}', "names no host"),
    ],
)
def test_a_damaged_lock_refuses_with_one_clear_message(tmp_path, content, needle):
    (tmp_path / LOCK_NAME).write_text(content)
    with pytest.raises(OutputLockedError) as err:
        _write(tmp_path, eps=0.1)
    message = str(err.value)
    assert needle in message and f"delete {tmp_path / LOCK_NAME}" in message
    assert "\n" not in message


def test_a_file_lock_refuses_a_second_live_holder(tmp_path):
    checkpoint = tmp_path / "shared" / "model.pt"
    with lock_file(checkpoint, command="underfire train --out a", flag="--checkpoint") as held:
        assert held == checkpoint
        lock = tmp_path / "shared" / f".model.pt{LOCK_NAME}"
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(OutputLockedError) as err:
            with lock_file(checkpoint, command="underfire train --out b"):
                pass
        message = str(err.value)
        assert f"{checkpoint} is in use by `underfire train --out a`" in message
        assert "choose another path" in message
        # another file in the same folder, and the folder itself, are not held
        with (
            lock_file(tmp_path / "shared" / "other.pt", command="x"),
            RunLock(tmp_path / "shared", "y"),
        ):
            pass
    assert not lock.exists()


def test_a_stale_file_lock_is_taken_over(tmp_path):
    checkpoint = tmp_path / "model.pt"
    (tmp_path / f".model.pt{LOCK_NAME}").write_text(
        json.dumps({"pid": 2**31 - 1, "host": socket.gethostname(), "command": "c"})
    )
    with pytest.warns(RuntimeWarning, match="stale lock"), lock_file(checkpoint, command="x"):
        pass


def test_a_file_lock_on_a_folder_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="--checkpoint .* is a folder"):
        lock_file(tmp_path, command="x", flag="--checkpoint")
