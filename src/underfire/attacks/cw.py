"""Carlini & Wagner's L2 attack (IEEE S&P 2017, "Towards Evaluating the Robustness of
Neural Networks").

minimize ‖x' − x‖₂² + c·f(x') over w, with x' = ½(tanh(w) + 1) (the box constraint as a
change of variables) and f the logit margin max(Z_y − max_{i≠y} Z_i, −κ) (untargeted) or
max(max_{i≠t} Z_i − Z_t, −κ) (targeted). Adam on w; a per-sample binary search over c
(start ``initial_const``; ×10 until the first success, then bisection); the smallest-L2
successful point found is kept, the clean input where none was found.
"""

from __future__ import annotations

import torch
from torch import nn

from underfire.attacks.base import ATTACKS, Attack, check_gradient, margin_loss
from underfire.core.validation import check_int, check_positive

__all__ = ["CW"]

# The authors' code scales by 0.999999 before atanh so that pixels at exactly 0 or 1 map to
# finite w (torchattacks clamps instead, which gives w = ±inf and freezes those pixels).
_TANH_SCALE = 0.999999


@ATTACKS.register("cw")
class CW(Attack):
    """Carlini & Wagner L2 attack with binary search over the constant c.

    Args:
        const: initial c (the paper's ``initial_const``, 1e-3 in the authors' code).
        kappa: confidence κ ≥ 0 of the margin.
        steps: Adam iterations per binary-search step.
        lr: Adam learning rate.
        binary_search_steps: number of values of c tried (1 = fixed c, as in torchattacks).
        abort_early: per sample, stop when its loss has not decreased by 0.01% over the last
            ``steps // 10`` iterations (the authors' rule, applied per sample so that the
            batched result equals the per-sample one).
        max_const: c is never raised above this.
        warm_start: start each binary-search step after the first from the sample's best
            example so far (the clean input where none was found) instead of from the clean
            input. The authors restart from the clean input every time (the default); a warm
            start keeps what the previous c found, so the loss stalls and the sample aborts
            sooner (``underfire audit`` uses it; docs/audit.md gives its cost and effect).

    ``eps`` is None: CW minimizes the L2 norm instead of bounding it.
    """

    name = "cw"
    iterative = True
    minimal = True

    def __init__(
        self,
        *,
        const: float = 1e-3,
        kappa: float = 0.0,
        steps: int = 1000,
        lr: float = 0.01,
        binary_search_steps: int = 9,
        abort_early: bool = True,
        max_const: float = 1e10,
        warm_start: bool = False,
    ) -> None:
        self.const = check_positive(const, "const")
        self.kappa = check_positive(kappa, "kappa", allow_zero=True)
        self.steps = check_int(steps, "steps")
        self.lr = check_positive(lr, "lr")
        self.binary_search_steps = check_int(binary_search_steps, "binary_search_steps")
        self.abort_early = bool(abort_early)
        self.max_const = check_positive(max_const, "max_const")
        self.warm_start = bool(warm_start)
        if self.max_const < self.const:
            raise ValueError(
                f"max_const ({self.max_const:g}) must be ≥ const ({self.const:g}), the first c tried"
            )

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        targeted = target is not None
        labels = target if target is not None else y
        n = x.shape[0]
        w0 = torch.atanh((2 * x - 1) * _TANH_SCALE)
        const = torch.full((n,), self.const, device=x.device, dtype=x.dtype)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, self.max_const)
        best_l2 = torch.full_like(const, float("inf"))
        best = x.clone()
        for bs in range(self.binary_search_steps):
            start = w0
            if self.warm_start and bs > 0:  # best is x itself where nothing was found
                start = torch.atanh((2 * best - 1) * _TANH_SCALE)
            succeeded = self._search_step(
                model, x, labels, start, const, best, best_l2, targeted=targeted, first=bs == 0
            )
            # Binary search on c, per sample (Carlini & Wagner's schedule).
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(
                upper < self.max_const,
                (lower + upper) / 2,
                torch.where(succeeded, const, const * 10),
            ).clamp(max=self.max_const)
        return best

    def _search_step(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        w_start: torch.Tensor,
        const: torch.Tensor,
        best: torch.Tensor,
        best_l2: torch.Tensor,
        *,
        targeted: bool,
        first: bool,
    ) -> torch.Tensor:
        """Adam on w for one value of c per sample; ``best``/``best_l2`` updated in place.
        Returns which samples reached the goal. A sample whose loss stalls (the authors'
        early abort) leaves the batch: the batch is compacted, so aborted samples cost
        nothing (the Adam moments are per pixel, so a sample's steps do not depend on the
        others'; the step count is shared, as in one Adam optimizer)."""
        n = x.shape[0]
        succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
        active = torch.arange(n, device=x.device)
        w = w_start.clone()
        m, v = torch.zeros_like(w), torch.zeros_like(w)
        prev = torch.full_like(const, float("inf"))
        check_every = max(self.steps // 10, 1)
        beta1, beta2 = 0.9, 0.999  # torch.optim.Adam's defaults, as the authors' code
        for step in range(self.steps):
            xa, la, ca = x[active], labels[active], const[active]
            wa = w[active].requires_grad_(True)
            x_adv = 0.5 * (torch.tanh(wa) + 1)
            l2 = (x_adv - xa).flatten(1).pow(2).sum(1)
            logits = model(x_adv)
            f = margin_loss(logits, la, targeted=targeted, kappa=self.kappa)
            loss = l2 + ca * f
            (grad,) = torch.autograd.grad(loss.sum(), wa)
            if first and step == 0:  # samples already at the goal have f = −κ and no gradient
                check_gradient(grad[f.detach() > -self.kappa], "CW", stacklevel=7)
            with torch.no_grad():
                # Record the point just evaluated (success judged with κ, as the authors do).
                ok = self._reached(logits, la, targeted)
                succeeded[active] |= ok
                improve = ok & (l2 < best_l2[active])
                hit = active[improve]
                best_l2[hit] = l2[improve]
                best[hit] = x_adv.detach()[improve]
                # Adam, on the active samples only
                t = step + 1
                ma = m[active].mul_(beta1).add_(grad, alpha=1 - beta1)
                va = v[active].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (va / (1 - beta2**t)).sqrt_().add_(1e-8)
                wa = wa.detach().addcdiv_(ma, denom, value=-self.lr / (1 - beta1**t))
                m[active], v[active], w[active] = ma, va, wa
                if self.abort_early and step % check_every == 0:
                    stalled = loss.detach() > prev[active] * 0.9999
                    prev[active] = torch.where(stalled, prev[active], loss.detach())
                    active = active[~stalled]
                    if active.numel() == 0:
                        break
        return succeeded

    def _reached(self, logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        """Whether the goal is met with margin κ (the authors' success test)."""
        adj = logits.clone()
        shift = -self.kappa if targeted else self.kappa
        adj.scatter_add_(1, labels[:, None], torch.full_like(adj[:, :1], shift))
        return adj.argmax(1) == labels if targeted else adj.argmax(1) != labels
