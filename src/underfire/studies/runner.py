"""``run_study``: the one runner of every study, for the command line and Python alike.

It owns the output folder (lock, run records, refusal of another run's results unless
``force``: :func:`underfire.core.outputs.guard_output`), seeding, device and threads, the part
cache, timing, ``config.json``, the results file and the report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from underfire._version import __version__
from underfire.core import distributed
from underfire.core import io as _io
from underfire.core.outputs import guard_output
from underfire.core.seed import seed_everything
from underfire.studies.base import Part, Study, StudyRun
from underfire.studies.cache import fingerprint
from underfire.studies.registry import get_study

__all__ = ["run_study"]


def run_study(
    study: Study | str,
    config: Any = None,
    *,
    inputs: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    force: bool = False,
    device: str | torch.device | None = None,
    threads: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    arguments: Mapping[str, Any] | None = None,
    argv: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run ``study`` and return its results (also written to ``out``).

    Args:
        study: a :class:`Study` or a registered name (``underfire.studies.STUDIES``).
        config: the study's config; None builds it with ``study.configure(**options)``.
        inputs: the objects the study takes from its caller (the audit: ``model``, ``data``).
        out: output folder (results, ``config.json``, report, figures, ``parts/``); None
            keeps everything in memory.
        force: replace the results of a different run in ``out`` (parts computed for other
            settings, models or data are recomputed either way, never reused).
        device, threads: where to compute; ``threads`` sets torch's CPU threads.
        progress, log: progress bars and one-line messages (the command line turns them on).
        command, arguments: how the run is recorded in ``out`` (the command line passes its
            own; the default records the study, its config and the inputs' fingerprints).
        argv: the command line shown in the folder's lock while the run holds it.
        options: ``configure``'s keywords when ``config`` is None.
    """
    study = get_study(study) if isinstance(study, str) else study
    if config is None:
        config = study.configure(**options)
    elif options:
        raise TypeError(
            f"pass either a config or configure's options, not both: {', '.join(options)}"
        )
    inputs = dict(inputs or {})
    if set(inputs) != set(study.inputs):
        need = ", ".join(study.inputs) or "none"
        raise TypeError(
            f"study {study.name!r} takes the inputs: {need}; got: {', '.join(inputs) or 'none'}"
        )
    if threads is not None:
        torch.set_num_threads(threads)
    run = StudyRun(
        study=study,
        config=config,
        out=Path(out) if out is not None else None,
        device=torch.device(device or "cpu"),
        progress=progress,
        log=(log or (lambda _msg: None)) if distributed.is_main() else (lambda _msg: None),
    )
    run.state.update(inputs)
    if run.out is None:
        _execute(run)
        return run.results
    identities = {name: fingerprint(v) for name, v in sorted(inputs.items())}
    record = (
        dict(arguments)
        if arguments is not None
        else {
            "config": config.to_dict(),
            "inputs": identities,
        }
    )
    guard = guard_output(
        run.out,
        command=command or f"run_study({study.name!r})",
        arguments=record,
        results=study.files,
        force=force,
        argv=argv,
        cli=command is not None,  # the command line's wording: --out, --force
    )
    with contextlib.ExitStack() as held:
        # under torchrun rank 0 alone holds the folder and writes; the others only compute
        distributed.from_main(lambda: bool(held.enter_context(guard)))
        _execute(run)
        if not distributed.is_main():
            return run.results
        # written with the results, so that config.json always describes finished results
        _io.write_json(
            run.out / "config.json",
            config.to_dict()
            | {
                "study": study.name,
                "underfire_version": __version__,
                "device": str(run.device),
                "inputs": identities,
            },
        )
        saved = study.results_file(run.results) if study.results_file else run.results
        _io.write_json(run.out / study.results_name, saved)
        if study.report is not None:
            study.report(run)
    return run.results


def _execute(run: StudyRun) -> None:
    with run.study.around(run) if run.study.around else contextlib.nullcontext():
        _execute_parts(run)


def _execute_parts(run: StudyRun) -> None:
    seed = getattr(run.config, "seed", None)
    if isinstance(seed, int):
        seed_everything(seed)
    timings: dict[str, dict[str, Any]] = {}
    for part in run.study.parts:
        if part.optional and run.over_budget():
            run.skipped.append(part.name)
            continue
        t0 = time.perf_counter()
        reused_before = len(run.reused)
        value = _run_part(run, part)
        if value is not None:
            run.results[part.name] = value
        timings[part.name] = {
            "seconds": round(time.perf_counter() - t0, 3),
            "reused": len(run.reused) > reused_before,
        }
    run.results["run"] = {
        "study": run.study.name,
        "underfire_version": __version__,
        "seconds": round(run.elapsed(), 3),
        "parts": timings,
        "reused": list(run.reused),
        "skipped": list(run.skipped),
    }


def _run_part(run: StudyRun, part: Part) -> Any:
    if not part.cache:
        return part.compute(run)
    missing = [name for name in part.uses if name not in run.state]
    if missing:
        raise KeyError(
            f"part {part.name!r} of study {run.study.name!r} uses {', '.join(missing)}, which "
            "no earlier part or input provides"
        )
    return run.cached(
        part.name,
        lambda: part.compute(run),
        reads=part.reads,
        uses={name: run.state[name] for name in part.uses},
        store=part.store,
        version=part.version,
        code=part.compute,
    )
