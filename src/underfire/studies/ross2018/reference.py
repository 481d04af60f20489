"""The summary of a reference run, for ``docs/results/`` (the report's numbers, no per-sample data).

A reference run (a profile the docs quote: ``paper-cpu``, ``full``) leaves
``docs/results/ross2018-<dataset>-<profile>.json``: the command, date, machine and wall time,
and per model the clean accuracy, the white-box and the transferred FGSM accuracy (mean over
the other source models) at ε = 0.1, 0.2, 0.3, the white-box TGSM accuracy at 0.3, and the
claims' verdicts. The docs' tables are checked against these files::

    python -m underfire.studies.ross2018.reference runs/ross2018-mnist-full \\
        docs/results/ross2018-mnist-full.json --command "underfire reproduce ross2018 ..."
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

__all__ = ["REPORTED_EPS", "reference_summary", "write_reference_summary"]

#: The ε of the paper's comparison table (docs/ross2018.md).
REPORTED_EPS = (0.1, 0.2, 0.3)


def _at(eps: list[float], e: float) -> int | None:
    for i, value in enumerate(eps):
        if abs(value - e) < 1e-9:
            return i
    return None


def _attack_rows(attack: dict[str, Any], eps: list[float]) -> dict[str, dict[str, Any]]:
    """White-box (diagonal) and transferred (mean over the other sources) accuracy per victim."""
    acc = attack["accuracy"]
    models = list(acc)
    rows: dict[str, dict[str, Any]] = {}
    for victim in models:
        white: dict[str, float] = {}
        transferred: dict[str, float] = {}
        for e in REPORTED_EPS:
            i = _at(eps, e)
            if i is None:
                continue
            white[f"{e:g}"] = round(acc[victim][victim][i], 4)
            others = [acc[s][victim][i] for s in models if s != victim]
            if others:
                transferred[f"{e:g}"] = round(sum(others) / len(others), 4)
        rows[victim] = {"white_box": white, "transferred": transferred}
    return rows


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
    eps = [float(e) for e in config["eps"]]
    fgsm = _attack_rows(results["fgsm"], eps)
    tgsm_i = _at(eps, 0.3)
    models: dict[str, Any] = {}
    for name, clean in results["clean"].items():
        row: dict[str, Any] = {"clean": round(clean["accuracy"], 4)}
        row["fgsm_white_box"] = fgsm.get(name, {}).get("white_box", {})
        row["fgsm_transferred"] = fgsm.get(name, {}).get("transferred", {})
        if "tgsm" in results and tgsm_i is not None and name in results["tgsm"]["accuracy"]:
            row["tgsm_white_box_0.3"] = round(results["tgsm"]["accuracy"][name][name][tgsm_i], 4)
        row["train_seconds_last_session"] = results.get("training", {}).get(name, {}).get("seconds")
        models[name] = row
    return {
        "study": "ross2018",
        "command": command,
        "date": date,
        "machine": machine(),
        "wall_seconds": wall_seconds,
        "last_session_seconds": results.get("run", {}).get("seconds"),
        "underfire_version": results.get("run", {}).get("underfire_version"),
        "config": {
            k: config.get(k)
            for k in (
                "dataset",
                "profile",
                "seed",
                "steps",
                "batch_size",
                "lr",
                "paper_lambda",
                "insensitive_lambda",
                "init",
                "n_eval",
                "models",
            )
        },
        "n_eval": results.get("n_eval"),
        "models": models,
        "claims": [
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
