"""Studies: a config, named parts and a report, run by one runner.

:func:`run_study` runs any registered study (``STUDIES``: the demo, the audit and the paper
reproductions) or a :class:`Study` of your own; it owns the output folder, its lock and run
records, seeding, the part cache (keyed on the config, the models' and data's identities and
the code) and the report. ``docs/developing.md`` shows how to add a study.
"""

from __future__ import annotations

from underfire.studies.base import Part, Study, StudyConfig, StudyRun
from underfire.studies.cache import PartCache, fingerprint, part_key
from underfire.studies.registry import STUDIES, get_study, register_study, study_names
from underfire.studies.runner import run_study
from underfire.studies.sharding import gather, shard

__all__ = [
    "STUDIES",
    "Part",
    "PartCache",
    "Study",
    "StudyConfig",
    "StudyRun",
    "fingerprint",
    "gather",
    "get_study",
    "part_key",
    "register_study",
    "run_study",
    "shard",
    "study_names",
]
