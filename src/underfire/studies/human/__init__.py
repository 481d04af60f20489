"""The human-subject study of Ross & Doshi-Velez (2018), claim 5: do people see the target
digit in JSMA examples crafted against gradient-regularized models?

- ``build`` (the registered study ``human-study``, run by :func:`~underfire.studies.run_study`):
  the models, the crafted examples, the stimuli and ``manifest.json``
  (:mod:`~underfire.studies.human.build`);
- :func:`~underfire.raters.server.serve`: the raters' page and API, answers in SQLite
  (:mod:`~underfire.raters.store`);
- :func:`~underfire.raters.simulate.simulate`: a bounded loopback load generator;
- :func:`~underfire.studies.human.analysis.analyze`: exclusions, per-pair statistics, report;
  :func:`~underfire.studies.human.analysis.claim5_from_analysis` decides claim 5 from them.
"""

from __future__ import annotations

from typing import Any

from underfire.raters.manifest import rater_plan, read_manifest
from underfire.studies.base import Part, Study
from underfire.studies.human.build import craft, write_stimuli
from underfire.studies.human.config import HumanStudyConfig, configure
from underfire.studies.human.models import load_models
from underfire.studies.registry import register_study

__all__ = ["STUDY", "HumanStudyConfig", "configure", "rater_plan", "read_manifest"]


def summary(results: dict[str, Any]) -> list[str]:
    stimuli = results["stimuli"]
    return [
        f"{stimuli['pairs']} pairs of {len(stimuli['models'])} models "
        f"({', '.join(stimuli['models'])}) and {stimuli['checks']} attention checks per rater"
    ]


# craft caches itself (keyed on the models' weights and the source images); training resumes
# from the quick models' own checkpoints; writing the stimuli is quick.
STUDY = register_study(
    Study(
        name="human-study",
        title="human-subject study of JSMA examples (Ross & Doshi-Velez 2018, claim 5)",
        configure=configure,
        parts=(
            Part("models", load_models, cache=False),
            Part("craft", craft, cache=False),
            Part("stimuli", write_stimuli, cache=False),
        ),
        summary=summary,
    )
)
