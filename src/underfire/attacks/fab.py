"""Fast Adaptive Boundary attack (Croce & Hein, ICML 2020, "Minimally distorted adversarial
examples with a fast adaptive boundary attack"), L∞ and L2, untargeted and targeted.

FAB looks for the adversarial example closest to x. Each step linearizes the decision
boundary between the true class y and a class l (the target; untargeted, the l whose
linearized boundary is nearest, |f_l − f_y| / ‖∇(f_l − f_y)‖_q), projects both the current
iterate and the original point onto that hyperplane inside the box [0, 1] (the minimal-norm
δ with w·δ = c and x + δ ∈ [0, 1], solved exactly by sorting the breakpoints), and mixes the
two projections with weight α = min(‖δ‖ / (‖δ‖ + ‖δ_orig‖), α_max), extrapolated by η.
Where the iterate is adversarial it is pulled back towards x: x ← (1 − β)·x_orig + β·x.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from underfire.attacks.apgd import peer_kwargs
from underfire.attacks.base import ATTACKS, Attack, check_ball
from underfire.core.norms import get_norm
from underfire.core.validation import check_int, check_positive, check_seed

__all__ = ["FAB", "box_hyperplane_projection"]

_TINY = 1e-12


def box_hyperplane_projection(
    w: torch.Tensor, c: torch.Tensor, x: torch.Tensor, norm: str
) -> torch.Tensor:
    """The δ of least L∞ or L2 norm with w·δ = c and x + δ ∈ [0, 1], per sample.

    ``w``, ``x``: (N, D); ``c``: (N,). Where no such δ exists (the box does not reach the
    hyperplane), the box's point farthest along w. Moving along sign(w) with t = ‖δ‖∞ (L∞)
    or δ = clip(λ·w) (L2), w·δ is a piecewise-linear increasing function of t or λ whose
    breakpoints are where coordinates hit the box: sorting them gives t or λ exactly.
    """
    flip = c < 0
    w = torch.where(flip[:, None], -w, w)
    c = c.abs()
    room = torch.where(w > 0, 1 - x, x)  # how far each coordinate may move along sign(w)
    a = w.abs()
    if norm == "linf":
        brk, slope = room, a
    else:
        brk = torch.where(a > 0, room / a.clamp_min(_TINY), torch.zeros_like(a))
        slope = a * a
    brk, order = brk.sort(dim=1)
    slope = slope.gather(1, order)
    full = slope * brk  # what a saturated coordinate contributes to w·δ
    before = full.cumsum(1) - full  # saturated coordinates below each breakpoint
    tail = slope.flip(1).cumsum(1).flip(1)  # slope of the coordinates not yet saturated
    reach = before + brk * tail  # w·δ when t equals each breakpoint
    k = (reach < c[:, None]).sum(1, keepdim=True)
    feasible = k < w.shape[1]
    ks = k.clamp(max=w.shape[1] - 1)
    t = (c[:, None] - before.gather(1, ks)) / tail.gather(1, ks).clamp_min(_TINY)
    t = torch.where(feasible, t, brk[:, -1:])
    step = t if norm == "linf" else t * a
    return w.sign() * torch.minimum(step, room)


@ATTACKS.register("fab")
class FAB(Attack):
    """FAB (Croce & Hein 2020): minimal adversarial perturbations, reported within ε.

    The result is the closest adversarial point found, projected onto the ε-ball; a sample
    stops being attacked once a point within ε fools the model.

    Args:
        eps: radius ε of the ball (the budget the result must respect).
        norm: "linf" or "l2".
        steps: iterations per run (AutoAttack: 100).
        restarts: runs; later ones start from a random point at half the best distance.
        n_target_classes: with ``targeted``, how many runner-up classes to aim at in turn.
        targeted: FAB-T (AutoAttack's version): the boundary to each of the top
            ``n_target_classes`` other classes of the clean input, one at a time; one
            gradient per step instead of K.
        alpha_max, eta, beta: the paper's α_max = 0.1, extrapolation η = 1.05 and backward
            step β = 0.9.
        seed: seeds the random restarts.
    """

    name = "fab"
    iterative = True
    deterministic = False

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        targeted: bool = False,
        n_target_classes: int = 9,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        seed: int | None = 0,
    ) -> None:
        self.norm, self.eps = check_ball(norm, eps)
        self.steps = check_int(steps, "steps", minimum=1)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        self.targeted = bool(targeted)
        self.n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)
        self.alpha_max = check_positive(alpha_max, "alpha_max")
        self.eta = check_positive(eta, "eta")
        self.beta = check_positive(beta, "beta")
        if self.alpha_max > 1 or self.beta > 1:
            raise ValueError("alpha_max and beta must be in (0, 1]")
        self.seed = check_seed(seed)

    @classmethod
    def _constructor_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = peer_kwargs(kwargs)
        if "multi_targeted" in kwargs:  # torchattacks' name for FAB-T
            kwargs["targeted"] = kwargs.pop("multi_targeted")
        kwargs.pop("n_classes", None)
        return super()._constructor_kwargs(kwargs)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.eps:
            return x.clone()
        gen = self._generator(x.device)
        with torch.no_grad():
            logits = model(x)
        best = x.clone()
        robust = logits.argmax(1) == y
        if target is not None:  # the caller's target: success is reaching it
            robust = logits.argmax(1) != target
            return self._restarts(model, x, y, target, robust, gen, strict=True)[0]
        if not self.targeted:
            return self._restarts(model, x, y, None, robust, gen)[0]
        ranked = logits.argsort(dim=1, descending=True)
        for rank in range(1, min(self.n_target_classes, logits.shape[1] - 1) + 1):
            todo = robust.nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            t = ranked[todo, rank]  # the top class is y: these samples are still robust
            adv, ok = self._restarts(model, x[todo], y[todo], t, robust[todo], gen)
            best[todo] = adv
            robust[todo[ok]] = False
        return best

    def _restarts(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        robust: torch.Tensor,
        gen: torch.Generator | None,
        *,
        strict: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(closest adversarial point found, fooled within ε) over the runs; ``strict``: only
        the target counts (else any misclassification, as FAB-T in AutoAttack)."""
        nrm = get_norm(self.norm or "linf")
        best = x.clone()
        dist = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        dist[~robust] = 0.0
        for r in range(self.restarts):
            todo = (dist > float(self.eps or 0.0)).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            xs = x[todo]
            start = xs
            if r > 0:  # a random point at half the best distance found so far (or of ε)
                radius = torch.minimum(dist[todo], torch.full_like(dist[todo], self.eps or 0.0))
                noise = nrm.direction(torch.randn(xs.shape, generator=gen, device=x.device))
                scale = nrm.distance(noise, torch.zeros_like(noise)).clamp_min(_TINY)
                start = (xs + noise * (radius / scale / 2).view(-1, 1, 1, 1)).clamp(0, 1)
            tt = None if target is None else target[todo]
            adv, d = self._run(model, xs, y[todo], tt, start, strict=strict)
            better = d < dist[todo]
            best[todo[better]] = adv[better]
            dist[todo[better]] = d[better]
        return best, dist <= float(self.eps or 0.0) + 1e-6

    def _boundary(
        self, model: nn.Module, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_l − f_y at z, its input gradient) for the class l of the nearest linearized
        boundary (untargeted) or l = target."""
        z = z.detach().requires_grad_(True)
        logits = model(z)
        if target is not None:
            diff = logits.gather(1, target[:, None]) - logits.gather(1, y[:, None])
            (grad,) = torch.autograd.grad(diff.sum(), z)
            return diff.detach().squeeze(1), grad
        k = logits.shape[1]
        grads = torch.stack(
            [
                torch.autograd.grad(logits[:, j].sum(), z, retain_graph=j < k - 1)[0]
                for j in range(k)
            ],
            dim=1,
        )  # (N, K, ...)
        rows = torch.arange(z.shape[0], device=z.device)
        diffs = (logits - logits.gather(1, y[:, None])).detach()
        gdiff = (grads - grads[rows, y].unsqueeze(1)).flatten(2)
        dual = gdiff.abs().sum(2) if self.norm == "linf" else gdiff.norm(dim=2)
        score = diffs.abs() / (dual + _TINY)
        score[rows, y] = float("inf")
        best = score.argmin(1)
        return diffs[rows, best], gdiff[rows, best].view_as(z)

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        start: torch.Tensor,
        *,
        strict: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One FAB run (Croce & Hein 2020, Algorithm 1): (closest adversarial point, its
        distance, inf where none); samples leave once fooled within ε."""
        nrm = get_norm(self.norm or "linf")
        eps = float(self.eps or 0.0)
        best = x.clone()
        dist = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        idx = torch.arange(x.shape[0], device=x.device)
        cur = start.clone()
        for _ in range(self.steps):
            xo, yi = x[idx], y[idx]
            ti = None if target is None else target[idx]
            diff, w = self._boundary(model, cur, yi, ti)
            flat_w, n = w.flatten(1), cur.shape[0]
            d1 = box_hyperplane_projection(flat_w, -diff, cur.flatten(1), self.norm or "linf")
            c2 = -(diff + (flat_w * (xo - cur).flatten(1)).sum(1))
            d2 = box_hyperplane_projection(flat_w, c2, xo.flatten(1), self.norm or "linf")
            n1 = nrm.distance(d1, torch.zeros_like(d1))
            n2 = nrm.distance(d2, torch.zeros_like(d2))
            a = (n1 / (n1 + n2).clamp_min(_TINY)).clamp(max=self.alpha_max).view(-1, 1)
            new = (1 - a) * (cur.flatten(1) + self.eta * d1) + a * (xo.flatten(1) + self.eta * d2)
            new = new.clamp(0.0, 1.0).view(n, *x.shape[1:])
            with torch.no_grad():
                pred = model(new).argmax(1)
            adv = pred == ti if strict and ti is not None else pred != yi
            d = nrm.distance(new, xo)
            closer = adv & (d < dist[idx])
            best[idx[closer]] = new[closer]
            dist[idx[closer]] = d[closer]
            back = adv.view(-1, 1, 1, 1)
            cur = torch.where(back, (1 - self.beta) * xo + self.beta * new, new).detach()
            keep = dist[idx] > eps
            if not bool(keep.all()):
                idx, cur = idx[keep], cur[keep]
                if idx.numel() == 0:
                    break
        return best, dist
