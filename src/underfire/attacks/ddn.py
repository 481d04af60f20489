"""Decoupled Direction and Norm (DDN), Rony et al., CVPR 2019 ("Decoupling Direction and Norm
for Efficient Gradient-Based L2 Adversarial Attacks and Defenses"), Algorithm 1.

A minimal-L2 attack at one gradient per step and no binary search: the step follows the
normalized gradient of the cross-entropy (the *direction*), and the perturbation is then
rescaled to a norm ε that shrinks by a factor 1 − γ while the iterate is adversarial and grows
by 1 + γ while it is not (the *norm*). The smallest adversarial iterate is kept. Carlini &
Wagner's L2 attack reaches about the same norms with a binary search over its constant, i.e.
several full optimizations per image; DDN does one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.base import ATTACKS, Attack, check_gradient
from underfire.core.validation import check_int, check_positive

__all__ = ["DDN"]


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


@ATTACKS.register("ddn")
class DDN(Attack):
    """Decoupled Direction and Norm: a minimal-L2 attack (untargeted, or targeted with ``target``).

    Args:
        steps: gradient steps (the paper's 100 for its comparisons with C&W; 1000 for the
            best norms).
        init_norm: the first ε (1.0 in the paper).
        gamma: ε shrinks by 1 − γ after an adversarial iterate, grows by 1 + γ otherwise
            (0.05 in the paper).
        max_step, min_step: the step along the normalized gradient, cosine-annealed from
            ``max_step`` to ``min_step`` over the steps (1.0 → 0.01, as in the authors' code).
        levels: quantize every iterate to this many intensity levels (256 for 8-bit images,
            as the paper reports its results), or None.

    The result is the adversarial iterate of smallest L2 norm, or the clean input where no
    iterate was adversarial. ``eps`` is None: DDN minimizes the norm instead of bounding it.
    """

    name = "ddn"
    iterative = True
    minimal = True
    norm = "l2"

    def __init__(
        self,
        *,
        steps: int = 100,
        init_norm: float = 1.0,
        gamma: float = 0.05,
        max_step: float = 1.0,
        min_step: float = 0.01,
        levels: int | None = None,
    ) -> None:
        self.steps = check_int(steps, "steps")
        self.init_norm = check_positive(init_norm, "init_norm")
        self.gamma = check_positive(gamma, "gamma")
        if self.gamma >= 1:
            raise ValueError(f"gamma must be in (0, 1), got {gamma!r}: ε is scaled by 1 ± γ")
        self.max_step = check_positive(max_step, "max_step")
        self.min_step = check_positive(min_step, "min_step")
        if self.min_step > self.max_step:
            raise ValueError(
                f"min_step ({min_step:g}) must be ≤ max_step ({max_step:g}): the step is "
                "annealed from max_step down to min_step"
            )
        self.levels = None if levels is None else check_int(levels, "levels", minimum=2)

    def step_size(self, i: int) -> float:
        """The step at iteration ``i`` (cosine annealing from max_step to min_step)."""
        cosine = (1 + math.cos(math.pi * i / self.steps)) / 2
        return self.min_step + (self.max_step - self.min_step) * cosine

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        targeted = target is not None
        labels = target if target is not None else y
        sign = -1.0 if targeted else 1.0  # descend the target's loss, ascend the label's
        n = x.shape[0]
        delta = torch.zeros_like(x)
        # no perturbation needs a norm above the distance to the box's farthest corner
        ceiling = _l2(torch.maximum(x, 1 - x))
        eps = torch.full((n,), self.init_norm, device=x.device, dtype=x.dtype).minimum(ceiling)
        best_l2 = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
        best = x.clone()
        for i in range(self.steps):
            x_adv = (x + delta).requires_grad_(True)
            logits = model(x_adv)
            loss = sign * F.cross_entropy(logits, labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                pred = logits.argmax(1)
                adversarial = pred == labels if targeted else pred != labels
                if i == 0:  # samples already adversarial need no gradient
                    check_gradient(grad[~adversarial], "DDN", stacklevel=6)
                l2 = _l2(delta)
                better = adversarial & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best[better] = x_adv.detach()[better]
                # the direction: a step along the normalized gradient
                direction = grad / _per_sample(_l2(grad).clamp_min(1e-12), grad)
                delta = delta + self.step_size(i) * direction
                # the norm: shrink while adversarial, grow while not
                eps = torch.where(adversarial, eps * (1 - self.gamma), eps * (1 + self.gamma))
                eps = eps.minimum(ceiling)
                delta = delta * _per_sample(eps / _l2(delta).clamp_min(1e-12), delta)
                x_next = (x + delta).clamp(0, 1)
                if self.levels is not None:
                    x_next = torch.round(x_next * (self.levels - 1)) / (self.levels - 1)
                delta = x_next - x
        # the last iterate is judged too
        with torch.no_grad():
            x_last = x + delta
            pred = model(x_last).argmax(1)
            adversarial = pred == labels if targeted else pred != labels
            better = adversarial & (_l2(delta) < best_l2)
            best[better] = x_last[better]
        return best
