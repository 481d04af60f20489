"""Fast gradient sign method and its targeted variant.

FGSM (Goodfellow, Shlens & Szegedy, ICLR 2015, "Explaining and Harnessing Adversarial
Examples"): x_adv = clip[0,1](x + ε·sign(∇ₓ CE(f(x), y))).
TGSM (targeted gradient sign; Kurakin et al. 2017, used by Ross & Doshi-Velez 2018 with
t = (y + 1) mod K): x_adv = clip[0,1](x − ε·sign(∇ₓ CE(f(x), t))).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from underfire.attacks.base import (
    ATTACKS,
    Attack,
    check_finite_result,
    check_gradient,
    check_target_rule,
    loss_gradient,
)
from underfire.core.validation import check_eps

__all__ = ["FGSM", "TGSM"]


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015), one L∞ step of size ε.

    Untargeted with ``target=None``; with a target (tensor or rule) it descends the target's
    cross-entropy instead (that is TGSM). Warns :class:`GradientMaskingWarning` when input
    gradients are zero/NaN/underflowing (then sign(∇) = 0 and x is returned unchanged).

    Args:
        eps: L∞ radius ε ≥ 0 (inputs in [0, 1]).

    Example:
        >>> x_adv = FGSM(eps=0.1)(model, x, y)
    """

    name = "fgsm"

    def __init__(self, *, eps: float = 0.3) -> None:
        self.eps = check_eps(eps)
        self.norm = "linf"

    def direction(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        *,
        stacklevel: int = 6,
    ) -> torch.Tensor:
        """sign of the ascent direction (N, C, H, W), shared by every ε; model already guarded.

        ``stacklevel`` makes a gradient-masking warning point at the user's line: 6 from a
        call (direction ← _perturb ← _attack ← __call__ ← caller), 5 from :meth:`sweep` (its
        ``_sweep`` hook runs inside the base class's generator)."""
        labels = y if target is None else target
        grad, _ = loss_gradient(model, x, labels, targeted=target is not None)
        check_gradient(grad, type(self).__name__, stacklevel=stacklevel)
        return grad.sign()

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        assert self.eps is not None
        if self.eps == 0:
            return x.clone()
        return x + self.eps * self.direction(model, x, y, target)

    def _sweep(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: list[float],
        target: torch.Tensor | str | None,
    ) -> Iterator[torch.Tensor]:
        """x_adv for every ε from a single gradient: sign(∇) does not depend on ε."""
        with self._borrow(model, x, y, target) as t:
            step = check_finite_result(
                self.direction(model, x, y.long(), t, stacklevel=5), self.name
            )
        for e in eps:
            yield (x + e * step).clamp(0.0, 1.0) if e > 0 else x.clone()


@ATTACKS.register("tgsm")
class TGSM(FGSM):
    """Targeted gradient sign method: FGSM descending CE toward a target class.

    With ``target=None`` at call time the constructor's ``target`` rule is used; the
    default "next" is t = (y + 1) mod K as in Ross & Doshi-Velez (2018), who show TGSM
    breaks defensively distilled models that FGSM cannot move.

    Args:
        eps: L∞ radius ε ≥ 0.
        target: default rule, one of "next", "random", "least-likely".
    """

    name = "tgsm"

    def __init__(self, *, eps: float = 0.3, target: str = "next") -> None:
        super().__init__(eps=eps)
        if target is None:
            raise ValueError(
                "TGSM is targeted: target must be one of 'next', 'random', 'least-likely'; use FGSM for untargeted"
            )
        self.default_target = check_target_rule(target)
