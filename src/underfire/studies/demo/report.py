"""The demo's report: an introduction, then one section per section that ran, built from the
run's results (figures are drawn by the parts that computed them)."""

from __future__ import annotations

from underfire._version import __version__
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.demo.adv2 import write as adv2
from underfire.studies.demo.attacks import write as attacks
from underfire.studies.demo.classifier import write as classifier
from underfire.studies.demo.defenses import write as defenses
from underfire.studies.demo.diagnosis import write as diagnosis
from underfire.studies.demo.interpreters import write as interpreters

__all__ = ["TITLE", "write_report"]

TITLE = "underfire demo: security audit of an interpretable classifier"

_WRITERS = {
    "classifier": classifier,
    "defenses": defenses,
    "attacks": attacks,
    "interpreters": interpreters,
    "adv2": adv2,
    "diagnosis": diagnosis,
}


def write_report(run: StudyRun) -> None:
    """``report.md`` and ``report.html`` in ``run.out``, one section per selected section."""
    if run.out is None:
        raise ValueError("the demo's report needs an output folder")
    cfg = run.config
    report = Report(TITLE)
    report.text(
        f"underfire {__version__}. Dataset `{cfg.dataset}`, seed {cfg.seed}, device `{run.device}`. "
        "Every number below was computed by this run; `results.json` holds them all."
    )
    for name, write in _WRITERS.items():
        if cfg.runs(name) and name in run.results:
            write(report, run)
    report.write(run.out)
