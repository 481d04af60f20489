"""Output-folder protection shared by the command line and the Python API (provisional: the
full version with damaged-record handling and file locks lands with the protection work)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from underfire.core import io as _io
from underfire.core.errors import UnderfireError

__all__ = ["RECORD_NAME", "OutputConflictError", "guard_output"]

RECORD_NAME = ".underfire-runs.json"


class OutputConflictError(UnderfireError, FileExistsError):
    """An output folder holds the result of a different run."""


def _read_records(out: Path) -> dict[str, Any]:
    try:
        records = json.loads((out / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


@contextlib.contextmanager
def guard_output(
    out: str | Path,
    *,
    command: str,
    arguments: Mapping[str, Any],
    results: Sequence[str] = (),
    force: bool = False,
    argv: str | None = None,
) -> Iterator[Path]:
    out = Path(out)
    with _io.RunLock(out, argv or f"underfire {command}"):
        this = {"command": command, "arguments": json.loads(json.dumps(dict(arguments)))}
        records = _read_records(out)
        if not force:
            for name in results:
                record = records.get(name, {})
                if (out / name).exists() and record.get("run") != this:
                    raise OutputConflictError(
                        f"{out / name} holds the result of a different run; choose another "
                        "output folder, or pass force=True (--force) to replace it"
                    )
        for name in results:
            records[name] = {"run": this, "finished": None}
        if results:
            _io.write_json(out / RECORD_NAME, records)
        yield out
        records = _read_records(out)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for name in results:
            records[name] = {"run": this, "finished": stamp}
        if results:
            _io.write_json(out / RECORD_NAME, records)
