"""The audit as a registered study: its parts in order, its report and its inputs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from underfire.core.state import model_state
from underfire.core.threads import forward_macs, job_threads
from underfire.studies.audit.attacks import (
    run_attacks,
    run_clean,
    run_gradients,
    run_transfer,
    run_unbounded,
)
from underfire.studies.audit.config import configure
from underfire.studies.audit.maps import run_diagnosis, run_maps, run_prepare
from underfire.studies.audit.report import report
from underfire.studies.audit.soundness import run_finish
from underfire.studies.base import Part, Study, StudyRun
from underfire.studies.registry import register_study

__all__ = ["STUDY"]


@contextmanager
def borrowed_model(run: StudyRun) -> Iterator[None]:
    """The audited model in eval mode for the whole audit, given back exactly as it was, and
    torch's CPU threads chosen for its batches (:mod:`underfire.core.threads`)."""
    with model_state(run.state["model"], freeze=False) as model:
        model.eval()
        macs = None
        if run.device.type == "cpu":
            x = run.state["data"][0]
            macs = forward_macs(model, x[:1], batch=min(run.config.batch_size, x.shape[0]))
        with job_threads(macs):
            yield


def results_file(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the bulky per-sample lists and map tensors."""
    drop = {"correct", "maps", "x", "y", "benign", "success", "linf", "pred"}

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            # only lists: the median L∞ (a number) stays, the per-sample L∞ list goes
            return {k: strip(w) for k, w in v.items() if not (k in drop and isinstance(w, list))}
        if isinstance(v, list):
            return [strip(w) for w in v]
        return v

    return strip(results)


# ------------------------------------------------------------------------------ the report


# Every part caches its results itself (one entry per attack and interpreter, keyed on the
# settings, the model's weights and the data), so the top-level parts are not cached again.
STUDY = register_study(
    Study(
        name="audit",
        title="how attackable a classifier and its explanations are",
        configure=configure,
        parts=tuple(
            Part(name, compute, cache=False)
            for name, compute in (
                ("prepare", run_prepare),
                ("clean", run_clean),
                ("attacks", run_attacks),
                ("transfer", run_transfer),
                ("unbounded", run_unbounded),
                ("gradients", run_gradients),
                ("maps", run_maps),
                ("diagnosis", run_diagnosis),
                ("finish", run_finish),
            )
        ),
        report=report,
        inputs=("model", "data"),
        results_file=results_file,
        around=borrowed_model,
    )
)
