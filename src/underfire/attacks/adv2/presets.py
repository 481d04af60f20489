"""ADV²'s settings: the presets per interpreter family and input size, and the λ schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from underfire.interpreters.base import Interpreter

__all__ = ["PRESETS", "Distance", "Schedule", "as_tuple", "family", "lambdas"]

Distance = Literal["sse", "mse"]
Schedule = Literal["stages", "linear"]

# Per interpreter family and input size. "imagenet": the authors' public code
# (github.com/alps-lab/adv2): GRAD 300 PGD steps then stages of 301/201/101/101 steps with
# λ = 0.001/0.004/0.01/0.05 on the summed squared distance of 4×4-average-pooled maps, keeping
# the closest iterate with p_t > 0.8; CAM 400 PGD steps then 1200 steps of NLL + c·MSE, c ramping
# linearly 5 → 10. MASK, RTS and ensembles: underfire's choices in the same spirit (the paper
# gives no numbers). "small": tuned here on 8×8 digits and 28×28 MNIST on a CPU (docs/attacks.md).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "imagenet": {
        "gradient": dict(
            warm_steps=300,
            steps=(301, 201, 101, 101),
            lam=(0.001, 0.004, 0.01, 0.05),
            schedule="stages",
            distance="sse",
            pool=4,
            kappa=0.8,
            label_smoothing=0.95,
            check_every=10,
        ),
        "cam": dict(
            warm_steps=400,
            steps=1200,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.0,
            label_smoothing=1.0,
            check_every=10,
        ),
        "mask": dict(
            warm_steps=300,
            steps=600,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=1,
        ),
    },
    "small": {
        "gradient": dict(
            warm_steps=20,
            steps=(40, 40, 40),
            lam=(0.05, 0.2, 1.0),
            schedule="stages",
            distance="sse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=1,
        ),
        "cam": dict(
            warm_steps=20,
            steps=120,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=1,
        ),
        "mask": dict(
            warm_steps=20,
            steps=60,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=5,
        ),
    },
}
_FAMILY = {
    "grad": "gradient",
    "smoothgrad": "gradient",
    "ig": "gradient",
    "gradcam": "cam",
    "cam": "cam",
    "rts": "cam",
    "mask": "mask",
    "ensemble": "cam",
}


def family(interpreter: Interpreter) -> str:
    """The preset family of ``interpreter``: "mask" when its map solves an optimization (MASK,
    or an ensemble with a MASK member), else by registered name ("cam" for unknown names)."""
    if interpreter.optimized:
        return "mask"
    return _FAMILY.get(interpreter.name, "cam")


def as_tuple(v: float | int | Sequence[Any]) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


def lambdas(
    lam: float | Sequence[float], steps: int | Sequence[int], schedule: Schedule
) -> list[float]:
    """λ at each joint step (length = total steps): constant per stage ("stages"; one
    ``steps`` count split evenly over the stages) or piecewise linear through the given
    values, ending on the last one ("linear")."""
    lam_t = as_tuple(lam)
    steps_t = as_tuple(steps)
    total = sum(steps_t)
    if schedule == "linear":
        if len(lam_t) == 1:
            return [float(lam_t[0])] * total
        pos = torch.linspace(0, len(lam_t) - 1, total + 1, dtype=torch.float64)[1:]
        vals = torch.tensor(lam_t, dtype=torch.float64)
        lo = pos.floor().long().clamp(max=len(lam_t) - 2)
        frac = pos - lo
        return (vals[lo] * (1 - frac) + vals[lo + 1] * frac).tolist()
    if len(steps_t) == 1 and len(lam_t) > 1:
        per, rest = divmod(total, len(lam_t))
        steps_t = tuple(per + (i < rest) for i in range(len(lam_t)))
    out: list[float] = []
    for v, s in zip(lam_t, steps_t, strict=False):
        out += [float(v)] * s
    return out
