"""The core layer: the invariants every other part of underfire relies on, owned once.

It imports nothing else from underfire (a test enforces the layers: core → data, models →
attacks, interpreters, metrics → defenses, diagnosis, robustness → experiments → commands).

- :mod:`~underfire.core.errors`: the exception types;
- :mod:`~underfire.core.validation`: input and hyperparameter checks with clear messages;
- :mod:`~underfire.core.state`: :func:`model_state`, the one model-state guard, and the one
  mechanism for reversible model changes (:func:`patch_forward`, :func:`freeze`);
- :mod:`~underfire.core.norms`: L∞ and L2 norm objects (projection, random start, steps);
- :mod:`~underfire.core.autograd`: smooth ReLU, batch-norm double backward, layer capture;
- :mod:`~underfire.core.registry` and :mod:`~underfire.core.io` (atomic outputs, run locks);
- :mod:`~underfire.core.outputs`: output folders and files held for one run (CLI and API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from underfire.core.errors import (
    CheckpointError,
    CommandError,
    DatasetNotFoundError,
    NonFiniteError,
    OutputConflictError,
    OutputLockedError,
    UnderfireError,
    UnknownNameError,
)
from underfire.core.registry import Registry

if TYPE_CHECKING:
    from underfire.core.norms import L2, LINF, L2Norm, LinfNorm, Norm, get_norm
    from underfire.core.state import ModelState, freeze, model_state, patch_forward

# The torch-backed names load on first use, so that `underfire --help` and the other
# torch-free parts of the CLI (which import core.io and core.errors) start instantly.
_LAZY = {
    "L2": "norms",
    "LINF": "norms",
    "L2Norm": "norms",
    "LinfNorm": "norms",
    "Norm": "norms",
    "get_norm": "norms",
    "ModelState": "state",
    "model_state": "state",
    "freeze": "state",
    "patch_forward": "state",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"underfire.core.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'underfire.core' has no attribute {name!r}")


__all__ = [
    "L2",
    "LINF",
    "CheckpointError",
    "CommandError",
    "DatasetNotFoundError",
    "L2Norm",
    "LinfNorm",
    "ModelState",
    "Norm",
    "NonFiniteError",
    "OutputConflictError",
    "OutputLockedError",
    "Registry",
    "UnderfireError",
    "UnknownNameError",
    "freeze",
    "get_norm",
    "model_state",
    "patch_forward",
]
