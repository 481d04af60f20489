"""Output protection, the same for the command line and the Python API.

- :func:`guard_output` holds an output folder for one run: a lock (one live run per folder,
  :class:`~underfire.core.io.RunLock`) and run records (``OUT/.underfire-runs.json``: which
  invocation wrote each result file), so that a run never replaces another run's result
  unless forced;
- :func:`lock_file` holds a single file written outside the output folder (a training
  checkpoint) with the same lock semantics.

A damaged record (not JSON, an entry or a ``"run"`` that is not a mapping) cannot prove that a
file belongs to this run: that file is refused unless forced, with a message naming the
record, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from underfire.core import io as _io
from underfire.core.errors import OutputConflictError

__all__ = ["RECORD_NAME", "guard_output", "lock_file", "read_records", "run_arguments"]

#: Where a run records which invocation wrote each of its result files in its output folder.
RECORD_NAME = ".underfire-runs.json"


def run_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` as stored in a run record and read back: sorted by name, JSON values
    (paths as strings, tuples as lists), so a record compares equal to its run."""
    ordered = {str(k): v for k, v in sorted(arguments.items(), key=lambda kv: str(kv[0]))}
    return json.loads(json.dumps(ordered, default=_plain))


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_records(out: str | Path) -> tuple[dict[str, Any], str | None]:
    """The run records of ``out`` and, when the record file is damaged, why.

    Returns ``({}, None)`` when there is no record file; ``({}, reason)`` when it cannot be
    read as a JSON object (then no file in ``out`` can be proven to belong to a run).
    """
    path = Path(out) / RECORD_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as err:
        return {}, f"it cannot be read ({type(err).__name__})"
    try:
        records = json.loads(text)
    except ValueError:
        return {}, "it is not JSON"
    if not isinstance(records, dict):
        return {}, f"it holds a JSON {type(records).__name__}, not an object"
    return records, None


def _entry_problem(entry: object) -> str | None:
    """Why a record entry is damaged (None when it is well formed)."""
    if not isinstance(entry, dict):
        return f"its entry is a {type(entry).__name__}, not an object"
    run = entry.get("run")
    if not isinstance(run, dict):
        return f'its "run" is a {type(run).__name__}, not an object'
    if not isinstance(run.get("command"), str):
        return 'its "run" names no command'
    return None


def _conflict(
    out: Path,
    name: str,
    entry: object,
    damage: str | None,
    this: dict[str, Any],
    wording: tuple[str, str],
) -> OutputConflictError | None:
    """The error for result ``name`` in ``out`` when this run may not replace it, else None."""
    if not (out / name).exists():
        return None
    out_flag, force_flag = wording
    record = out / RECORD_NAME
    what = None
    if damage is not None:
        what = f"{record} is damaged ({damage})"
    elif entry is not None and (problem := _entry_problem(entry)) is not None:
        what = f"its record in {record} is damaged ({problem})"
    if what is not None:
        return OutputConflictError(
            f"{out / name} cannot be proven to be a result of this run: {what}; choose "
            f"another {out_flag}, or pass {force_flag} to replace it and rewrite the record"
        )
    if isinstance(entry, dict) and entry.get("run") == this:
        return None  # the same invocation: it recomputes or resumes its own result
    run = entry.get("run") if isinstance(entry, dict) else None
    previous = run.get("command") if isinstance(run, dict) else None
    finished = isinstance(entry, dict) and entry.get("finished")
    shown = _shown(previous) if isinstance(previous, str) else None
    by = (
        f"a different `{shown}` run"
        if shown and finished
        else f"an interrupted `{shown}` run with other arguments"
        if shown
        else "another run"
    )
    return OutputConflictError(
        f"{out / name} holds the result of {by}; choose another {out_flag}, or pass "
        f"{force_flag} to replace it"
    )


def _write_records(out: Path, results: Sequence[str], this: dict[str, Any], stamp: object) -> None:
    records, _ = read_records(out)
    # damaged entries of other files are kept as they are: they stay unproven, not rewritten
    for name in results:
        records[name] = {"run": this, "finished": stamp}
    _io.write_json(out / RECORD_NAME, records)


def _shown(command: str) -> str:
    """A recorded command as a user would type it: a subcommand of the command line, or a
    Python call (``run_study('audit')``) as it is."""
    return command if "(" in command else f"underfire {command}"


@contextlib.contextmanager
def guard_output(
    out: str | Path,
    *,
    command: str,
    arguments: Mapping[str, Any],
    results: Sequence[str] = (),
    force: bool = False,
    argv: str | None = None,
    cli: bool = False,
) -> Iterator[Path]:
    """Hold the output folder ``out`` for one run: lock it, and protect finished results in it.

    - ``out`` must be a folder that can be written (else ``NotADirectoryError`` or
      ``PermissionError``, one line);
    - a live run holding the folder → :class:`~underfire.core.errors.OutputLockedError`;
      a stale lock (its process is gone) is taken over with a warning;
    - each name in ``results`` that already exists in ``out`` must have been written by the
      same invocation (same ``command`` and ``arguments``), as recorded in
      ``out/.underfire-runs.json``; otherwise :class:`~underfire.core.errors.OutputConflictError`
      unless ``force``. The same invocation may write them again (it recomputes the same
      result, or resumes);
    - the files are claimed for this run before it starts and marked finished after it; the
      lock is released on exit and on error.

    Args:
        out: the output folder (created if missing).
        command: the command or study name recorded for the run (e.g. ``"audit"``).
        arguments: what defines the run's result (JSON-able; device and ``force`` excluded).
        results: the result files, relative to ``out``, that this run writes.
        force: replace results of another run (or with a damaged record).
        argv: the command line after ``underfire``, shown to a second run in the lock;
            default: ``command``.
        cli: word messages for the command line (``--out``, ``--force``) rather than for the
            Python API (``out``, ``force=True``).

    Yields:
        ``out`` as a :class:`~pathlib.Path`.
    """
    out = Path(out)
    wording = ("--out", "--force") if cli else ("out", "force=True")
    with _io.RunLock(out, _shown(argv or command), flag=wording[0]):
        this = {"command": command, "arguments": run_arguments(arguments)}
        if not force:
            records, damage = read_records(out)
            for name in results:
                error = _conflict(out, name, records.get(name), damage, this, wording)
                if error is not None:
                    raise error
        # Claim the files first: after a crash, the same invocation may write them again.
        if results:
            _write_records(out, results, this, None)
        yield out
        if results:
            _write_records(out, results, this, time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def lock_file(
    path: str | Path, *, command: str, flag: str | None = None
) -> contextlib.AbstractContextManager[Path]:
    """Hold the single file ``path`` (e.g. a checkpoint outside the output folder) for one run.

    The lock is ``.<name>.underfire.lock`` beside the file, with the semantics of
    :func:`guard_output`'s folder lock: a second live run →
    :class:`~underfire.core.errors.OutputLockedError`; a stale lock is taken over with a
    warning. The file itself is neither created nor checked.

    Args:
        path: the file to hold (its folder is created if missing).
        command: what holds it, shown to a second run (e.g. ``"underfire train ..."``).
        flag: the option that named ``path``, for messages (e.g. ``"--checkpoint"``).

    Raises:
        IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    what = flag or "path"
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give the path of a file")
    return _held_file(path, _io.RunLock(path.parent, command, lock_of=path, flag=what))


@contextlib.contextmanager
def _held_file(path: Path, lock: _io.RunLock) -> Iterator[Path]:
    with lock:
        yield path
