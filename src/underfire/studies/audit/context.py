"""What the audit's parts share: the caller's model and data in ``run.state``, batching with
progress, and :func:`part`, which caches one result keyed on the config, model and data."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from underfire.core import distributed
from underfire.studies.audit.config import RESULT_FIELDS
from underfire.studies.base import StudyRun

__all__ = [
    "batches",
    "data_of",
    "eps_of",
    "gathered",
    "layers_of",
    "model_of",
    "part",
    "predict",
    "warned",
]


def model_of(run: StudyRun) -> nn.Module:
    return run.state["model"]


def data_of(run: StudyRun) -> tuple[torch.Tensor, torch.Tensor]:
    return run.state["data"]


def eps_of(run: StudyRun) -> list[float]:
    return run.state["eps"]


def layers_of(run: StudyRun) -> dict[str, dict[str, Any]]:
    """Interpreter name → its target layer {"name", "how", "size"} (CAM methods only)."""
    return run.state.setdefault("layers", {})


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def batches(
    run: StudyRun, what: str, n: int | None = None, size: int | None = None, *, shared: bool = False
) -> Iterable[tuple[int, int]]:
    """``(start, stop)`` spans over the first ``n`` audited samples, with a progress bar.

    ``shared``: under ``torchrun`` only this rank's block of whole batches (all of them in
    one process), each span the batch one process computes; :func:`gathered` puts the
    results back together.
    """
    x = data_of(run)[0]
    total = x.shape[0] if n is None else min(n, x.shape[0])
    size = size or run.config.batch_size
    if shared:
        spans = [(s.start, s.stop) for s in distributed.my_batches(total, size)]
    else:
        spans = [(i, min(i + size, total)) for i in range(0, total, size)]
    return run.bar(spans, what, total=len(spans))


def gathered(run: StudyRun, parts: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """The results of every rank's shared :func:`batches` (``parts``: one per batch, samples
    along ``dim``) joined in the original order, on every rank. Sent as objects (on the
    CPU), so a rank left without a batch needs no shape to send."""
    mine = torch.cat(parts, dim).cpu() if parts else None
    blocks = [b for b in distributed.gather_objects(mine) if b is not None]
    return torch.cat(blocks, dim)


def warned(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    """The first five distinct warnings that any rank caught (each rank saw its batches)."""
    mine = {f"{type(w.message).__name__}: {w.message}" for w in caught}
    return sorted(set().union(*distributed.gather_objects(mine)))[:5]


def part(
    run: StudyRun,
    name: str,
    compute: Callable[[StudyRun], dict[str, Any]],
    *,
    always: bool = False,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """``results[name]``: computed, or reused from ``out/parts`` when the config, the model's
    weights, the data and the code are unchanged. None (and listed as skipped) once the
    time budget is spent, unless ``always``. Each result keeps the seconds it took.

    ``settings``: JSON-able values the part's result depends on beyond the config's fields,
    e.g. the full settings of the attacks it builds: the key follows them, so a changed
    default of an attack is recomputed, never reused (the part's key versions only its own
    function's code, not the code it calls)."""
    if run.over_budget() and not always:
        run.skipped.append(name)
        return None

    def timed() -> dict[str, Any]:
        t0 = time.perf_counter()
        result = compute(run)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        return result

    result: dict[str, Any] = run.cached(
        name,
        timed,
        reads=RESULT_FIELDS,
        # fingerprints taken once by the "prepare" part (hashing a large data set per part
        # would cost seconds each)
        uses={
            "model": run.state["model_id"],
            "data": run.state["data_id"],
            **({"settings": dict(settings)} if settings else {}),
        },
        code=compute,
    )
    run.results[name] = result
    return result
