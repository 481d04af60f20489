"""The audit study: ``underfire.audit(model, data)`` and ``underfire audit`` (see
:mod:`underfire.studies.audit.api`)."""

from __future__ import annotations

from underfire.robustness import collect_data
from underfire.studies.audit.api import audit
from underfire.studies.audit.config import AuditConfig, default_eps
from underfire.studies.audit.report import write_report
from underfire.studies.audit.study import STUDY

__all__ = ["STUDY", "AuditConfig", "audit", "collect_data", "default_eps", "write_report"]
