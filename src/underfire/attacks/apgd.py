"""Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): APGD and its targeted version APGD-T.

APGD is PGD without a step size to tune: it starts with η = 2ε, takes momentum steps
(α = 0.75) and halves η at checkpoints w_j = ⌈p_j·N⌉ (p₀ = 0, p₁ = 0.22,
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) whenever, since the last checkpoint, fewer
than ρ = 75 % of the steps raised the loss, or neither η nor the best loss changed; each halving
restarts from the best point found. Losses: cross-entropy, or the scale-invariant
difference of logits ratio DLR(x, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3); APGD-T
minimizes the targeted DLR −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2) for each of the top-k
classes of the clean input in turn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.base import ATTACKS, Attack, check_ball, check_gradient
from underfire.core.norms import Ball, Norm, get_norm
from underfire.core.validation import check_int, check_positive, check_seed

__all__ = ["APGD", "APGDT", "apgd_checkpoints", "dlr_loss", "peer_kwargs"]

LOSSES = ("ce", "dlr")
_TINY = 1e-12

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def peer_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """torchattacks' spellings: ``n_restarts`` → ``restarts``, ``norm="Linf"`` → ``"linf"``."""
    if "n_restarts" in kwargs:
        if "restarts" in kwargs:
            raise TypeError("got both n_restarts and restarts (torchattacks' name): pass one")
        kwargs["restarts"] = kwargs.pop("n_restarts")
    if isinstance(kwargs.get("norm"), str):
        kwargs["norm"] = kwargs["norm"].strip().lower()
    kwargs.pop("verbose", None)
    return kwargs


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations w_j = ⌈p_j·steps⌉ < steps at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # rounded first: 0.22 + 0.19 is 0.41000000000000003 in floating point, not past 41 %
    points = {math.ceil(round(q * steps, 6)) for q in p[1:]}
    return sorted(w for w in points if w < steps)


def _sorted_gap(logits: torch.Tensor, lower: int) -> torch.Tensor:
    """z_π1 − z_π_lower (1-based ranks; the last class when there are fewer)."""
    top = logits.sort(dim=1, descending=True).values
    k = logits.shape[1]
    return top[:, 0] - top[:, min(lower, k) - 1]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per-sample DLR loss to *ascend* (Croce & Hein 2020, eq. 5 and its targeted form).

    With fewer than 3 (untargeted) or 4 (targeted) classes the denominator uses the lowest
    ranks that exist, so the loss stays scale-invariant.
    """
    real = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
        return -(real - other) / (_sorted_gap(logits, 3) + _TINY)
    tgt = logits.gather(1, target[:, None]).squeeze(1)
    top = logits.sort(dim=1, descending=True).values
    k = logits.shape[1]
    low = (top[:, min(3, k) - 1] + top[:, min(4, k) - 1]) / 2
    return -(real - tgt) / (top[:, 0] - low + _TINY)


def ce_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per-sample cross-entropy to ascend (untargeted) or its negative on the target."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def _fooled(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, *, any_miss: bool = False
) -> torch.Tensor:
    """Goal reached: misclassified (untargeted, or ``any_miss``), else predicted as ``target``."""
    pred = logits.argmax(1)
    return pred != y if target is None or any_miss else pred == target


class _Run:
    """One APGD run on a batch: the iterates, the best point and the step sizes, per sample.

    Samples leave the batch as soon as they are fooled (compaction: no work on broken points);
    ``found``/``x_found`` hold them.
    """

    def __init__(
        self, x: torch.Tensor, eps: float, norm: Norm, steps: int, momentum: float, rho: float
    ) -> None:
        self.x, self.eps, self.norm, self.steps = x, eps, norm, steps
        self.momentum, self.rho = momentum, rho
        self.any_miss = False  # targeted loss, but any misclassification counts (APGD-T)
        self.found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        self.x_found = x.clone()
        self.x_best = x.clone()
        self.loss_best = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=x.dtype)


def _gradient(
    model: nn.Module,
    xa: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    loss_fn: LossFn,
    eot: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-sample loss, gradient, logits) at ``xa``; the gradient is averaged over ``eot``
    forward passes for randomized models (expectation over transformation)."""
    grad = torch.zeros_like(xa)
    loss_sum = torch.zeros(xa.shape[0], device=xa.device, dtype=xa.dtype)
    logits_sum: torch.Tensor | None = None
    for _ in range(eot):
        z = xa.detach().requires_grad_(True)
        logits = model(z)
        loss = loss_fn(logits, y, target)
        (g,) = torch.autograd.grad(loss.sum(), z)
        grad += g
        loss_sum += loss.detach()
        logits_sum = logits.detach() if logits_sum is None else logits_sum + logits.detach()
    assert logits_sum is not None
    return loss_sum / eot, grad / eot, logits_sum / eot


def apgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    *,
    eps: float,
    norm: str,
    steps: int,
    loss_fn: LossFn,
    gen: torch.Generator | None,
    momentum: float = 0.75,
    rho: float = 0.75,
    eot: int = 1,
    check: bool = False,
    any_miss: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run (Croce & Hein 2020, Algorithm 1) from a random point of the ball.

    Returns (x_adv, fooled, loss): per sample the first fooling iterate where one was found,
    else the highest-loss one, and its loss (inf where fooled).
    """
    nrm = get_norm(norm)
    run = _Run(x, eps, nrm, steps, momentum, rho)
    run.any_miss = any_miss
    ball = nrm.ball(x, eps)
    idx = torch.arange(x.shape[0], device=x.device)
    x_cur = nrm.random_start(x, eps, gen)
    eta = torch.full((x.shape[0],), 2.0 * eps, device=x.device, dtype=x.dtype)
    loss, grad, logits = _gradient(model, x_cur, y, target, loss_fn, eot)
    if check:
        check_gradient(grad, "APGD", stacklevel=5)
    state = _State(idx, x_cur, x_cur.clone(), grad, loss, eta, y, target)
    _record(run, state, logits, x_cur, loss, grad)
    points = set(apgd_checkpoints(steps))
    last_point = 0
    for k in range(steps):
        if state.idx.numel() == 0:
            break
        state = _step(model, run, state, ball, loss_fn, eot, first=k == 0)
        if k + 1 in points and state.idx.numel():
            _checkpoint(run, state, k + 1 - last_point)
            last_point = k + 1
    out = torch.where(_rows(run.found, x), run.x_found, run.x_best)
    loss_out = torch.where(run.found, torch.full_like(run.loss_best, float("inf")), run.loss_best)
    return out, run.found, loss_out


class _State:
    """The active samples' iterate, previous iterate, gradient, loss, η and checkpoint stats."""

    def __init__(
        self,
        idx: torch.Tensor,
        x_cur: torch.Tensor,
        x_prev: torch.Tensor,
        grad: torch.Tensor,
        loss: torch.Tensor,
        eta: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
    ) -> None:
        self.idx, self.x_cur, self.x_prev, self.grad, self.loss = idx, x_cur, x_prev, grad, loss
        self.eta, self.y, self.target = eta, y, target
        n = idx.numel()
        self.grad_best = grad.clone()
        self.increases = torch.zeros(n, device=idx.device)
        self.reduced = torch.ones(n, dtype=torch.bool, device=idx.device)
        self.best_at_check = loss.clone()

    def keep(self, mask: torch.Tensor) -> None:
        for name in (
            "idx",
            "x_cur",
            "x_prev",
            "grad",
            "loss",
            "eta",
            "y",
            "grad_best",
            "increases",
            "reduced",
            "best_at_check",
        ):
            setattr(self, name, getattr(self, name)[mask])
        if self.target is not None:
            self.target = self.target[mask]


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _record(
    run: _Run,
    state: _State,
    logits: torch.Tensor,
    x_new: torch.Tensor,
    loss: torch.Tensor,
    grad: torch.Tensor,
) -> None:
    """Keep the best point and any fooling point; drop fooled samples from the batch."""
    idx = state.idx
    better = loss > run.loss_best[idx]
    if bool(better.any()):
        run.loss_best[idx[better]] = loss[better]
        run.x_best[idx[better]] = x_new[better]
        state.grad_best[better] = grad[better]
    fooled = _fooled(logits, state.y, state.target, any_miss=run.any_miss)
    if bool(fooled.any()):
        run.found[idx[fooled]] = True
        run.x_found[idx[fooled]] = x_new[fooled]
        state.keep(~fooled)


def _step(
    model: nn.Module,
    run: _Run,
    s: _State,
    ball: Ball,
    loss_fn: LossFn,
    eot: int,
    *,
    first: bool,
) -> _State:
    """x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1})), z = P(x_k + η·dir(∇)); the
    first step has no momentum."""
    eta = _rows(s.eta, s.x_cur)
    z = ball.project_(s.x_cur + eta * run.norm.direction(s.grad), s.idx)
    a = 1.0 if first else run.momentum
    x_new = s.x_cur + a * (z - s.x_cur) + (1 - a) * (s.x_cur - s.x_prev)
    x_new = ball.project_(x_new, s.idx)
    loss, grad, logits = _gradient(model, x_new, s.y, s.target, loss_fn, eot)
    s.increases += (loss > s.loss).float()
    s.x_prev, s.x_cur, s.grad, s.loss = s.x_cur, x_new, grad, loss
    _record(run, s, logits, x_new, loss, grad)
    return s


def _checkpoint(run: _Run, s: _State, span: int) -> None:
    """Halve η and restart from the best point where progress stalled since the last
    checkpoint (condition 1: too few loss increases; condition 2: η and best loss unchanged)."""
    best = run.loss_best[s.idx]
    stalled = s.increases < run.rho * span
    stalled |= ~s.reduced & (s.best_at_check >= best)
    s.reduced = stalled
    s.best_at_check = best.clone()
    s.increases.zero_()
    if bool(stalled.any()):
        s.eta = torch.where(stalled, s.eta / 2, s.eta)
        rows = _rows(stalled, s.x_cur)
        x_best = run.x_best[s.idx]
        s.x_cur = torch.where(rows, x_best, s.x_cur)
        s.x_prev = torch.where(rows, x_best, s.x_prev)
        s.grad = torch.where(rows, s.grad_best, s.grad)
        s.loss = torch.where(stalled, best, s.loss)


# ---------------------------------------------------------------------------- the attacks


@ATTACKS.register("apgd")
class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020), L∞ or L2, on the cross-entropy or the DLR loss.

    Args:
        eps: radius ε of the ball.
        norm: "linf" or "l2".
        steps: iterations per restart (AutoAttack: 100).
        restarts: runs from random starts; later runs attack only the samples not yet fooled.
        loss: "ce" (cross-entropy) or "dlr" (difference of logits ratio).
        rho: checkpoint threshold ρ (fraction of steps that must raise the loss).
        momentum: α of the momentum step (0.75 in the paper).
        eot_iter: gradients averaged per step (expectation over transformation, for
            randomized defenses; AutoAttack's "rand" version uses 20).
        seed: seeds the random starts.

    A ``target`` (tensor or rule) makes the loss targeted (−CE on t, or the targeted DLR).

    Example:
        >>> x_adv = APGD(eps=8/255, loss="dlr", restarts=5)(model, x, y)
        >>> x_adv = APGD(model, norm="Linf", eps=8/255, n_restarts=1)(x, y)  # torchattacks' style
    """

    name = "apgd"
    iterative = True
    deterministic = False

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        eot_iter: int = 1,
        seed: int | None = 0,
    ) -> None:
        self.norm, self.eps = check_ball(norm, eps)
        self.steps = check_int(steps, "steps", minimum=1)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss = loss
        self.rho = _fraction(rho, "rho")
        self.momentum = _fraction(momentum, "momentum")
        self.eot_iter = check_int(eot_iter, "eot_iter", minimum=1)
        self.seed = check_seed(seed)

    @classmethod
    def _constructor_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        return super()._constructor_kwargs(peer_kwargs(kwargs))

    def _loss_fn(self) -> LossFn:
        return dlr_loss if self.loss == "dlr" else ce_loss

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.eps:
            return x.clone()
        best, _ = self._restarts(model, x, y, target, self._generator(x.device), self._loss_fn())
        return best

    def _restarts(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        gen: torch.Generator | None,
        loss_fn: LossFn,
        *,
        check: bool = True,
        any_miss: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``restarts`` runs on the samples not yet fooled: (x_adv, fooled)."""
        assert self.eps is not None and self.norm is not None
        best = x.clone()
        best_loss = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=x.dtype)
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        with torch.no_grad():
            fooled |= _fooled(model(x), y, target, any_miss=any_miss)
        for r in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, ok, loss = apgd_run(
                model,
                x[todo],
                y[todo],
                None if target is None else target[todo],
                eps=self.eps,
                norm=self.norm,
                steps=self.steps,
                loss_fn=loss_fn,
                gen=gen,
                momentum=self.momentum,
                rho=self.rho,
                eot=self.eot_iter,
                check=check and r == 0,
                any_miss=any_miss,
            )
            better = ok | (loss > best_loss[todo])
            best[todo[better]] = adv[better]
            best_loss[todo[better]] = loss[better]
            fooled[todo[ok]] = True
        return best, fooled


@ATTACKS.register("apgdt")
class APGDT(APGD):
    """Targeted APGD on the targeted DLR loss (Croce & Hein 2020), over the top-k classes.

    Without a ``target``, each of the ``n_target_classes`` classes ranked 2, 3, … by the
    clean logits is the target of one run (``restarts`` runs each) on the samples still
    correctly classified; with a target (tensor or rule) only that class is used.

    Args:
        n_target_classes: how many runner-up classes to target (AutoAttack: 9; capped at
            K − 1).
        Others as :class:`APGD` (the loss is always the targeted DLR).
    """

    name = "apgdt"

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        momentum: float = 0.75,
        eot_iter: int = 1,
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            steps=steps,
            restarts=restarts,
            loss="dlr",
            rho=rho,
            momentum=momentum,
            eot_iter=eot_iter,
            seed=seed,
        )
        self.n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)

    def _settings(self) -> dict[str, Any]:
        return {k: v for k, v in super()._settings().items() if k != "loss"}

    @classmethod
    def _constructor_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.pop("n_classes", None)  # torchattacks asks for K; we read it from the logits
        return super()._constructor_kwargs(kwargs)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.eps:
            return x.clone()
        gen = self._generator(x.device)
        if target is not None:
            return self._restarts(model, x, y, target, gen, dlr_loss)[0]
        with torch.no_grad():
            logits = model(x)
        ranked = logits.argsort(dim=1, descending=True)
        best = x.clone()
        robust = logits.argmax(1) == y
        for rank in range(1, min(self.n_target_classes, logits.shape[1] - 1) + 1):
            todo = robust.nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            t = ranked[todo, rank]  # the top class is y: the samples are still robust
            adv, ok = self._restarts(
                model, x[todo], y[todo], t, gen, dlr_loss, check=rank == 1, any_miss=True
            )
            best[todo] = adv
            robust[todo[ok]] = False
        return best


def _fraction(value: object, name: str) -> float:
    v = check_positive(value, name)
    if v > 1:
        raise ValueError(f"{name} must be in (0, 1], got {v}")
    return v
