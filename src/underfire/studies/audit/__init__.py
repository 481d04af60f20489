"""The audit study: ``underfire.audit(model, data)`` and ``underfire audit`` (see
:mod:`underfire.studies.audit.api`)."""

from __future__ import annotations

from underfire.robustness import collect_data
from underfire.studies.audit.api import audit, borrowed_model, results_file
from underfire.studies.audit.attacks import (
    run_attacks,
    run_clean,
    run_gradients,
    run_transfer,
    run_unbounded,
)
from underfire.studies.audit.config import AuditConfig, configure, default_eps
from underfire.studies.audit.maps import run_diagnosis, run_maps, run_prepare
from underfire.studies.audit.report import report, write_report
from underfire.studies.audit.soundness import run_finish
from underfire.studies.base import Part, Study
from underfire.studies.registry import register_study

__all__ = ["STUDY", "AuditConfig", "audit", "collect_data", "default_eps", "write_report"]

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
