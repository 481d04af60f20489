"""What every study's reference summary shares: the machine line, writing the JSON, and the
command line (``python -m underfire.studies.STUDY.reference OUT DEST --command ...``)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["machine", "read_finished_run", "reference_main", "write_summary"]


def read_finished_run(out: str | Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(results, config, date)`` of the finished run in ``out`` (its ``results.json`` and
    ``config.json``; the date is the results file's, UTC).

    Raises:
        FileNotFoundError: ``out`` holds no finished run (no ``results.json``).
    """
    results_path = Path(out) / "results.json"
    if not results_path.exists():
        raise FileNotFoundError(f"{results_path} does not exist: run the reproduction first")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    config = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))
    date = time.strftime("%Y-%m-%d", time.gmtime(results_path.stat().st_mtime))
    return results, config.get("config", config), date


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    )


def write_summary(summary: dict[str, Any], dest: str | Path) -> Path:
    """Write ``summary`` to ``dest`` as JSON (indented, UTF-8); returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return dest


def reference_main(
    summarize: Callable[..., dict[str, Any]], description: str, argv: list[str] | None = None
) -> int:
    """The command line of a study's reference module: ``OUT DEST --command ... [--wall-seconds]``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help="the run's output folder")
    parser.add_argument("dest", type=Path, help="the summary to write (docs/results/...json)")
    parser.add_argument("--command", required=True, help="the command that produced the run")
    parser.add_argument("--wall-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    summary = summarize(args.out, command=args.command, wall_seconds=args.wall_seconds)
    print(write_summary(summary, args.dest))
    return 0
