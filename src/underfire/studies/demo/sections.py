"""How a demo section becomes parts: it runs only when the config selects it, and its numbers
are cached under the identity of the models and data they were computed from."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from underfire.studies.base import Part, StudyRun

__all__ = ["cached_section", "module_version", "one_thread", "section_part"]


@contextlib.contextmanager
def one_thread(run: StudyRun) -> Iterator[None]:
    """One intra-op CPU thread for the block. The demo's 8×8 inputs make many tiny ops: a
    second thread only adds synchronization, and on a busy 2-core machine each op then waits
    for a core; one thread is several times faster."""
    threads = torch.get_num_threads()
    if run.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=32)
def module_version(module: str) -> str:
    """SHA-256 of a section module's source: its constants (ε, image counts, steps) and
    helpers version its cached results, not only the compute function."""
    return hashlib.sha256(inspect.getsource(sys.modules[module]).encode()).hexdigest()[:16]


def _if_selected(section: str, compute: Callable[[StudyRun], Any], run: StudyRun) -> Any:
    if not run.config.runs(section):
        return None  # no result: the section is left out of results and report
    return compute(run)


def section_part(section: str, name: str, compute: Callable[[StudyRun], Any]) -> Part:
    """A part of ``section`` that runs only when the config selects the section.

    It is not cached itself (a section left out must not report an earlier run's result):
    training parts resume from their checkpoints, result parts call :func:`cached_section`.
    """
    return Part(name, functools.partial(_if_selected, section, compute), cache=False)


def cached_section(
    run: StudyRun,
    name: str,
    compute: Callable[[StudyRun], dict[str, Any]],
    *,
    uses: Sequence[str],
    reads: Sequence[str] = ("dataset", "seed"),
) -> dict[str, Any]:
    """``compute(run)``, or its stored result when the config fields it reads, the models and
    data named in ``uses`` (``run.state`` entries) and its module's code are unchanged.

    ``compute`` also draws the section's figures into ``run.out/figures``: they are kept with
    the stored result, so a reused result still has them.
    """
    missing = [u for u in uses if u not in run.state]
    if missing:
        raise KeyError(f"demo section {name!r} uses {', '.join(missing)}, which no part provides")
    return run.cached(
        name,
        lambda: compute(run),
        reads=reads,
        uses={u: run.state[u] for u in uses},
        version=module_version(compute.__module__),
        code=compute,
    )
