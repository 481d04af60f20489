"""The defense registry: every training objective registers where it is defined.

``@DEFENSES.register("gradreg")`` on a factory that takes the defense's options as keyword
arguments and returns an objective ``objective(model, x, y) -> loss``. Plain training
(``"normal"``, cross-entropy) registers here, as its class lives in :mod:`underfire.train`.
"""

from __future__ import annotations

import inspect
from typing import Any

from underfire.core.registry import Registry
from underfire.train import CrossEntropy

__all__ = ["DEFENSES", "create", "names"]

DEFENSES: Registry[Any] = Registry("defense")


@DEFENSES.register("normal")
def _normal() -> CrossEntropy:
    return CrossEntropy()


def names() -> list[str]:
    """The registered defense names."""
    return DEFENSES.names()


def create(name: str, **kwargs: Any) -> Any:
    """Build the objective registered as ``name`` (e.g. ``create("gradreg", lam=110)``).

    Raises:
        UnknownNameError: for an unknown name (the message lists the known ones).
        TypeError: for an option that the defense does not take (the message lists its options).
    """
    factory = DEFENSES.get(name)
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = ", ".join(accepted) or "none"
        raise TypeError(
            f"defense {name!r} does not take {', '.join(unknown)}; its options: {options}"
        )
    return DEFENSES.create(name, **kwargs)
