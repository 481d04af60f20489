"""The summary of a reference run, for ``docs/results/`` (the report's numbers, no per-sample data).

A reference run (a profile the docs quote, e.g. ``--dataset cifar10 --profile cpu``) leaves
``docs/results/zhang2020-<dataset>-<profile>.json``: the command, date, machine and wall time,
per classifier its test accuracy, training, the PGD baseline and ADV² per interpreter
(success, target confidence over the successes and over all, map L1 / IoU / blank count per
interpreter), the noise baseline, the countermeasures, and the findings' verdicts. The docs'
tables are checked against these files::

    python -m underfire.studies.zhang2020.reference runs/zhang2020-cifar10-cpu \\
        docs/results/zhang2020-cifar10-cpu.json --command "underfire reproduce zhang2020 ..."
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from underfire.studies.reference import (
    machine,
    read_finished_run,
    reference_main,
    write_summary,
)

__all__ = ["reference_summary", "write_reference_summary"]

#: Per-sample lists are left out; a list longer than this is per-sample data.
_LONGEST_LIST = 16

_CONFIG_FIELDS = (
    "dataset",
    "profile",
    "seed",
    "classifiers",
    "interpreters",
    "model_kwargs",
    "train_steps",
    "classifier_steps",
    "batch_size",
    "lr",
    "augment",
    "eps",
    "step_size",
    "pgd_steps",
    "adv2_preset",
    "adv2_scale",
    "n_eval",
    "mask_eval",
    "mask_steps",
    "ensemble_eval",
    "rts_steps",
)


def _numbers(value: Any) -> Any:
    """``value`` without per-sample data: keys ending in ``_all`` and long lists are dropped,
    floats rounded to 4 digits."""
    if isinstance(value, dict):
        return {
            k: _numbers(v)
            for k, v in value.items()
            if not str(k).endswith("_all") and not (isinstance(v, list) and len(v) > _LONGEST_LIST)
        }
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, float):
        return round(value, 4)
    return value


def _classifier(row: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "test_accuracy",
        "test_images",
        "n_eval",
        "images",
        "interpreters",
        "training",
        "notes",
        "mask_found",
        "noise",
        "pgd",
        "adv2",
        "adv2_skipped",
        "ensemble",
        "rtsa",
        "timings",
    )
    return {k: _numbers(row[k]) for k in keep if k in row}


def reference_summary(
    out: str | Path, *, command: str, wall_seconds: float | None = None
) -> dict[str, Any]:
    """The summary of the finished run in ``out`` (its ``results.json`` and ``config.json``).

    Args:
        out: the run's output folder.
        command: the command line that produced it (recorded as given).
        wall_seconds: the wall time of the whole run across sessions, when known (a resumed
            run's ``results.json`` holds only its last session's time).

    Raises:
        FileNotFoundError: ``out`` holds no finished run (no ``results.json``).
    """
    results, config, date = read_finished_run(out)
    return {
        "study": "zhang2020",
        "command": command,
        "date": date,
        "machine": machine(),
        "wall_seconds": wall_seconds,
        "last_session_seconds": results.get("timings", {}).get("total"),
        "underfire_version": results.get("underfire_version"),
        "config": {k: config.get(k) for k in _CONFIG_FIELDS if k in config},
        "classifiers": {c: _classifier(r) for c, r in results["classifiers"].items()},
        "findings": [
            {"id": c["id"], "claim": c["claim"], "held": c["held"]} for c in results["claims"]
        ],
    }


def write_reference_summary(
    out: str | Path, dest: str | Path, *, command: str, wall_seconds: float | None = None
) -> Path:
    """Write :func:`reference_summary` of ``out`` to ``dest`` (JSON); returns ``dest``."""
    return write_summary(reference_summary(out, command=command, wall_seconds=wall_seconds), dest)


def main(argv: list[str] | None = None) -> int:
    return reference_main(reference_summary, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
