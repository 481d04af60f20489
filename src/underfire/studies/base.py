"""What a study is: a config, named parts run in order, and a report.

A :class:`Study` is data: its name, how to build its config from options, its
:class:`Part` list and its report builder. :func:`underfire.studies.run_study` runs it; the
parts see one :class:`StudyRun`, which holds the config, the output folder, the results of
earlier parts, live objects (trained models, data sets) and the part cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from underfire.core import distributed
from underfire.studies.cache import PartCache, code_version, part_key

__all__ = ["Part", "Study", "StudyConfig", "StudyRun"]

T = TypeVar("T")


class StudyConfig(Protocol):
    """A study's config: a dataclass of plain values that says what to run."""

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Part:
    """One named step of a study.

    Attributes:
        name: key of its result in ``results``.
        compute: ``compute(run) -> result``; reads ``run.config``, earlier results and
            ``run.state``, and may put live objects (models) into ``run.state``.
        reads: the config fields the result depends on (``("*",)``: all of them).
        uses: names of ``run.state`` entries the result depends on (models, data): their
            fingerprints enter the cache key.
        cache: store the result under ``out/parts`` and reuse it when its key is unchanged.
            Parts that only build live objects (training with its own resumable checkpoint,
            loading data) are not cached.
        store: "json" (results of numbers and text) or "torch" (tensors).
        version: bump when the part's meaning changes in code it calls (its own source is
            hashed into the key already).
        optional: skipped, and reported so, once the config's ``time_budget`` is spent.
    """

    name: str
    compute: Callable[[StudyRun], Any]
    reads: tuple[str, ...] = ("*",)
    uses: tuple[str, ...] = ()
    cache: bool = True
    store: str = "json"
    version: int | str = 1
    optional: bool = False


@dataclass(frozen=True)
class Study:
    """A study registered in :data:`underfire.studies.STUDIES`.

    Attributes:
        name: the registry name (``underfire reproduce NAME``, ``run_study(NAME, ...)``).
        title: one line for listings and reports.
        configure: ``configure(**options) -> config``; validates and resolves profiles.
        parts: run in order by the runner.
        report: ``report(run) -> None`` writes ``report.md``, ``report.html`` and figures
            into ``run.out`` from ``run.results``.
        summary: ``summary(results) -> lines`` the command line prints at the end.
        inputs: names of the objects a caller hands in (e.g. the audit's ``model`` and
            ``data``); they are placed in ``run.state`` and fingerprinted in the run record.
        default_out: the output folder when none is given, from the config.
        results_name: the results file.
        results_file: ``results_file(results) -> data`` written to the results file (e.g.
            without bulky per-sample lists); the run still returns the full results.
        around: ``around(run) -> context manager`` entered around all parts (e.g. borrowing
            the caller's model in eval mode and giving it back exactly as it was).
    """

    name: str
    title: str
    configure: Callable[..., Any]
    parts: tuple[Part, ...]
    report: Callable[[StudyRun], None] | None = None
    summary: Callable[[dict[str, Any]], list[str]] = lambda _results: []
    inputs: tuple[str, ...] = ()
    default_out: Callable[[Any], Path] | None = None
    results_name: str = "results.json"
    results_file: Callable[[dict[str, Any]], Any] | None = None
    around: Callable[[StudyRun], AbstractContextManager[Any]] | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.parts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"study {self.name!r} has parts named twice: {', '.join(dupes)}")

    @property
    def files(self) -> tuple[str, ...]:
        """The result files a run writes (protected in the output folder's run records)."""
        reports = ("report.md", "report.html") if self.report is not None else ()
        return (self.results_name, "config.json", *reports)


@dataclass
class StudyRun:
    """What the parts of one run share."""

    study: Study
    config: Any
    out: Path | None
    device: torch.device
    progress: bool = False
    log: Callable[[str], None] = lambda _msg: None
    results: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def cache(self) -> PartCache | None:
        return PartCache(self.out / "parts") if self.out is not None else None

    def config_fields(self, reads: Sequence[str]) -> dict[str, Any]:
        data = self.config.to_dict()
        if "*" in reads:
            return data
        missing = [f for f in reads if f not in data]
        if missing:
            raise KeyError(
                f"study {self.study.name!r}: a part reads config fields it does not have: "
                f"{', '.join(missing)}"
            )
        return {f: data[f] for f in reads}

    def cached(
        self,
        name: str,
        compute: Callable[[], T],
        *,
        reads: Sequence[str] = ("*",),
        uses: Mapping[str, Any] | None = None,
        store: str = "json",
        version: int | str = 1,
        code: Callable[..., Any] | None = None,
    ) -> T:
        """``compute()``, or its stored result when its key is unchanged (a sub-part: e.g.
        one classifier × interpreter). ``uses`` maps names to the models and data it
        depends on (fingerprinted); ``code`` is the function whose source versions it
        (default: ``compute``)."""
        key = part_key(
            self.study.name,
            name,
            code=code_version(code or compute, version),
            config=self.config_fields(reads),
            uses=dict(uses or {}),
        )
        cache = self.cache
        # under torchrun rank 0 alone reads and writes the cache; every rank continues with
        # what it read or stored, so all ranks agree on every value
        if cache is not None:
            hit, value = distributed.from_main(lambda: cache.get(name, key, store))
            if hit:
                self.reused.append(name)
                return value
        value = compute()
        self.computed.append(name)
        if cache is not None:
            value = distributed.from_main(lambda: cache.put(name, key, value, store))
        return value

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def over_budget(self) -> bool:
        """Whether the time budget is spent: rank 0's clock decides for every rank under
        ``torchrun``, so that all skip the same parts (a part one rank skipped would leave
        the others waiting in its collectives)."""
        budget = getattr(self.config, "time_budget", None)
        if budget is None:
            return False
        return distributed.from_main(lambda: self.elapsed() > budget)

    def bar(self, items: Iterable[T], what: str, total: int | None = None) -> Iterable[T]:
        """``items`` with a progress bar (ETA) when the run shows progress."""
        if not self.progress or not distributed.is_main():
            return items
        from tqdm import tqdm

        return tqdm(items, desc=what, total=total, leave=False)

    def figure_path(self, name: str) -> Path:
        if not distributed.is_main():
            raise RuntimeError("under torchrun only rank 0 writes figures (in the report)")
        if self.out is None:
            raise ValueError("this run has no output folder to write figures into")
        path = self.out / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
