"""underfire: security of interpretable deep learning systems.

Attacks on classifiers and on interpreters, differentiable interpreters, defenses as
training objectives, diagnosis, and reproductions of the papers listed in the README.

``underfire.audit(model, data, ...)`` audits a classifier and its explanations in one call
(:func:`underfire.studies.audit.audit`; imported on first use, so ``import underfire`` and
``underfire --help`` stay free of torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from underfire._version import __version__

if TYPE_CHECKING:
    from underfire.studies.audit import audit

__all__ = ["__version__", "audit"]


def __getattr__(name: str) -> Any:
    if name == "audit":
        from underfire.studies.audit import audit

        return audit
    raise AttributeError(f"module 'underfire' has no attribute {name!r}")
