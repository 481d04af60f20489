"""Projected gradient descent (Madry et al. 2018) and the basic iterative method (BIM).

PGD (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018, "Towards Deep Learning Models
Resistant to Adversarial Attacks"): from a random point of the ε-ball, repeat
x ← Π_{B(x₀,ε) ∩ [0,1]}(x + α·s(∇ₓ L)), with s = sign for L∞ and s = ∇/‖∇‖₂ for L2.
BIM (Kurakin, Goodfellow & Bengio, 2017, "Adversarial Examples in the Physical World") is
the L∞ version without random start; with a target it is the iterated TGSM of
Ross & Doshi-Velez (2018).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.base import (
    ATTACKS,
    Attack,
    check_ball,
    check_gradient,
)
from underfire.core.norms import get_norm
from underfire.core.validation import check_eps, check_int, check_positive, check_seed

__all__ = ["BIM", "PGD", "random_start_point"]


def random_start_point(
    x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A uniformly random point of the ε-ball around ``x`` (L∞: per pixel; L2: in the
    ball's volume, radius ε·u^(1/d)), clipped to [0, 1]."""
    return get_norm(norm).random_start(x, eps, generator)


def check_step_size(step_size: object, norm: str) -> float:
    """α > 0 and finite; an L∞ step above 1 crosses all of [0, 1] and is refused like ε."""
    alpha = check_positive(step_size, "step_size")
    return check_eps(alpha, norm, "step_size")


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected gradient descent on the cross-entropy (Madry et al. 2018), L∞ or L2.

    Args:
        eps: radius ε of the ball (L∞ or L2; inputs in [0, 1]).
        step_size: α; default 2.5·ε/steps (Madry et al.).
        steps: number of gradient steps.
        norm: "linf" (signed steps) or "l2" (normalized gradient steps).
        random_start: start from a uniform point of the ε-ball instead of x.
        restarts: number of runs; per sample the first successful run is kept (else the
            highest-loss one). Later restarts only run on samples not yet fooled.
        early_stop: per sample, stop updating as soon as the prediction is wrong (or equals
            the target); the batch shrinks as samples succeed.
        seed: seeds the random start (None: the global torch RNG).

    Example:
        >>> x_adv = PGD(eps=0.3, steps=40, step_size=0.01)(model, x, y)
        >>> x_adv = PGD(eps=2.0, norm="l2", restarts=5, seed=0)(model, x, y, target="least-likely")
    """

    name = "pgd"
    iterative = True

    def __init__(
        self,
        *,
        eps: float = 0.3,
        step_size: float | None = None,
        steps: int = 40,
        norm: str = "linf",
        random_start: bool = True,
        restarts: int = 1,
        early_stop: bool = False,
        seed: int | None = None,
    ) -> None:
        self.norm, self.eps = check_ball(norm, eps)
        self.step_size = None if step_size is None else check_step_size(step_size, self.norm)
        self.steps = check_int(steps, "steps", minimum=1)
        self.random_start = bool(random_start)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        if self.restarts > 1 and not self.random_start:
            raise ValueError(
                "restarts > 1 repeats the same run without a random start; set random_start=True"
            )
        self.early_stop = bool(early_stop)
        self.seed = check_seed(seed)
        self.deterministic = not self.random_start
        self._subset: torch.Tensor | None = None

    #: ``attack(model, x, y, subset=idx)``: attack only the samples ``idx`` (int64 indices);
    #: the others come back unchanged. The random start is drawn for the whole batch, so a
    #: sample's result does not depend on which others are attacked beside it (what makes an
    #: evaluation that attacks only the still-robust samples exact; see underfire.attacks.cascade)
    call_options: ClassVar[tuple[str, ...]] = ("subset",)

    @contextmanager
    def _call_scope(self, subset: torch.Tensor | None = None) -> Iterator[None]:  # type: ignore[override]
        if subset is not None:
            if (
                not isinstance(subset, torch.Tensor)
                or subset.dtype != torch.long
                or subset.dim() != 1
            ):
                raise TypeError(
                    "subset must be a 1-D int64 tensor of sample indices, e.g. mask.nonzero()[:, 0]"
                )
        self._subset = subset
        try:
            yield
        finally:
            self._subset = None

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        assert self.eps is not None
        return self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        assert self.eps is not None
        if self.eps == 0:
            return x.clone()
        targeted = target is not None
        labels = target if target is not None else y
        gen = self._generator(x.device)
        subset = self._subset
        if subset is not None:
            if subset.numel() and (int(subset.min()) < 0 or int(subset.max()) >= x.shape[0]):
                raise ValueError(f"subset holds indices outside the batch of {x.shape[0]}")
            subset = subset.to(x.device)
        if self.restarts == 1:
            adv = self._run(model, x, labels, targeted, gen, check=True, active=subset)
            if subset is not None:  # the samples left out come back unchanged
                keep = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
                keep[subset] = False
                adv[keep] = x[keep]
            return adv
        best = x.clone()
        best_loss = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=x.dtype)
        todo = torch.arange(x.shape[0], device=x.device) if subset is None else subset
        norm = get_norm(self.norm or "linf")
        for r in range(self.restarts):
            if todo.numel() == 0:
                break
            # each restart's start is drawn for the whole batch, as in one run, so a sample's
            # starts do not depend on which others are still attacked (or in the subset)
            start = norm.random_start(x, float(self.eps), gen)
            xr, lr = x[todo], labels[todo]
            adv = self._run(model, xr, lr, targeted, gen, check=r == 0, start=start[todo])
            with torch.no_grad():
                logits = model(adv)
            loss = F.cross_entropy(logits, lr, reduction="none")
            loss = -loss if targeted else loss
            fooled = (logits.argmax(1) == lr) if targeted else (logits.argmax(1) != lr)
            better = fooled | (loss > best_loss[todo])
            best[todo[better]] = adv[better]
            best_loss[todo[better]] = torch.where(fooled[better], float("inf"), loss[better])
            todo = todo[~fooled]
        return best

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        gen: torch.Generator | None,
        *,
        check: bool,
        active: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One PGD run. Buffers are reused and updated in place; only the input needs a grad.
        ``active``: the indices attacked (None: all); early stop shrinks it as samples fall.
        ``start``: the first iterate (None: a random start drawn here, or x without one)."""
        eps, alpha = float(self.eps or 0.0), self.alpha
        norm = get_norm(self.norm or "linf")  # always set by the constructor
        if start is not None:
            x_adv = start.clone()
        else:
            x_adv = norm.random_start(x, eps, gen) if self.random_start else x.clone()
        ball = norm.ball(x, eps)  # B(x, ε) ∩ [0, 1], set up once (L∞: the box's bounds)
        if active is not None and active.numel() == 0:
            return x_adv
        for step in range(self.steps):
            xa = (x_adv if active is None else x_adv[active]).detach().requires_grad_(True)
            la = labels if active is None else labels[active]
            logits = model(xa)
            keep: torch.Tensor | None = None
            if self.early_stop:
                pred = logits.detach().argmax(1)
                keep = (pred != la) if targeted else (pred == la)
                if bool(keep.all()):
                    keep = None
                else:  # the fooled samples keep this iterate and leave the batch
                    idx = torch.arange(x.shape[0], device=x.device) if active is None else active
                    active = idx[keep]
                    if active.numel() == 0:
                        break
                    # the loss of the samples kept, through this forward pass (no second one)
                    logits, la = logits[keep], la[keep]
            loss = F.cross_entropy(logits, la, reduction="sum")
            (grad,) = torch.autograd.grad(-loss if targeted else loss, xa)
            if keep is not None:
                xa, grad = xa[keep], grad[keep]
            if check and step == 0:
                check_gradient(grad, type(self).__name__, stacklevel=6)
            xa = xa.detach()
            xa.add_(norm.direction(grad), alpha=alpha)
            xa = ball.project_(xa, active)
            if active is None:
                x_adv = xa
            else:
                x_adv[active] = xa
        return x_adv.detach()


@ATTACKS.register("bim")
class BIM(PGD):
    """Basic iterative method (Kurakin et al. 2017): L∞ PGD from x, no random start.

    With a target (tensor or rule) this is the iterated TGSM of Ross & Doshi-Velez (2018).

    Args:
        eps: L∞ radius ε.
        step_size: α; default ε/steps, so the last step can reach the box's corner.
        steps: number of steps.
        early_stop: per-sample early stop as in :class:`PGD`.
    """

    name = "bim"

    def __init__(
        self,
        *,
        eps: float = 0.3,
        step_size: float | None = None,
        steps: int = 10,
        early_stop: bool = False,
    ) -> None:
        super().__init__(
            eps=eps,
            step_size=step_size,
            steps=steps,
            norm="linf",
            random_start=False,
            early_stop=early_stop,
        )

    @property
    def alpha(self) -> float:
        assert self.eps is not None
        return self.step_size if self.step_size is not None else self.eps / self.steps
