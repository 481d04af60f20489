"""Attacks on classifiers: ``attack(model, x, y, target=None) -> x_adv``.

Hyperparameters go to the constructor (keyword-only, validated); data to the call.
Targeting is an argument: a tensor of classes or a rule ("next", "random", "least-likely").

>>> from underfire.attacks import PGD, create
>>> x_adv = PGD(eps=0.3, steps=40)(model, x, y)
>>> x_adv = create("tgsm", eps=0.2)(model, x, y)            # t = (y + 1) mod K
"""

from __future__ import annotations

from typing import Any

from underfire.attacks.adv2 import ADV2, ADV2Result
from underfire.attacks.apgd import APGD, APGDT
from underfire.attacks.autoattack import AutoAttack
from underfire.attacks.base import (
    ATTACKS,
    TARGET_RULES,
    Attack,
    AttackWarning,
    GradientMaskingWarning,
    SoundnessWarning,
    check_gradient,
    loss_gradient,
    margin_loss,
    project,
    resolve_target,
)
from underfire.attacks.cw import CW
from underfire.attacks.ddn import DDN
from underfire.attacks.fab import FAB
from underfire.attacks.fgsm import FGSM, TGSM
from underfire.attacks.jsma import JSMA
from underfire.attacks.pgd import BIM, PGD
from underfire.attacks.square import Square
from underfire.attacks.substitute import SubstituteAttack

__all__ = [
    "ADV2",
    "APGD",
    "APGDT",
    "ATTACKS",
    "BIM",
    "CW",
    "DDN",
    "FAB",
    "FGSM",
    "JSMA",
    "PGD",
    "TARGET_RULES",
    "TGSM",
    "ADV2Result",
    "Attack",
    "AttackWarning",
    "AutoAttack",
    "GradientMaskingWarning",
    "SoundnessWarning",
    "Square",
    "SubstituteAttack",
    "check_gradient",
    "create",
    "loss_gradient",
    "margin_loss",
    "names",
    "project",
    "resolve_target",
]


def create(name: str, **kwargs: Any) -> Attack:
    """Build a registered attack by name, e.g. ``create("pgd", eps=0.3, steps=40)``."""
    return ATTACKS.create(name, **kwargs)


def names() -> list[str]:
    """Names of the registered attacks."""
    return ATTACKS.names()
