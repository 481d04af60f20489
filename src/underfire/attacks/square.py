"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search").

Score-based: it reads only the model's outputs (every forward pass runs under
``torch.no_grad``; no gradient is ever taken), so gradient masking cannot stop it. Random
search on the margin loss z_y − max_{i≠y} z_i (targeted: max_{i≠t} z_i − z_t): each
iteration proposes a change inside one random square window of side
s = ⌈√(p·H·W)⌉ and keeps it where the loss drops; p decays from ``p_init`` on the paper's
schedule over the query budget. L∞ initializes with vertical stripes of ±ε and sets a
window to ±ε per channel; L2 initializes with a grid of centred pseudo-Gaussian bumps and
moves mass between two windows, keeping ‖δ‖₂ = ε.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from underfire.attacks.apgd import peer_kwargs
from underfire.attacks.base import ATTACKS, Attack, check_ball, margin_loss
from underfire.core.validation import check_int, check_positive, check_seed

__all__ = ["Square", "square_fraction"]

# the paper's schedule, for a budget of 10 000 queries: p is halved after each boundary
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, it: int, n_queries: int) -> float:
    """The fraction p of pixels a window covers at iteration ``it`` (the schedule rescaled to
    the budget)."""
    scaled = int(it / max(n_queries, 1) * 10000)
    return p_init / 2 ** sum(scaled > b for b in _HALVINGS)


def _bump(a: int, b: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A centred a×b pseudo-Gaussian bump of unit L2 norm: nested rectangles around the
    centre, the one of radius r adding 1/(r+1)²."""
    ci, cj = a // 2, b // 2
    ri = (torch.arange(a, device=device, dtype=dtype) - ci).abs()
    rj = (torch.arange(b, device=device, dtype=dtype) - cj).abs()
    ring = torch.maximum(ri[:, None], rj[None, :])
    radii = torch.arange(max(ci, cj) + 1, device=device, dtype=dtype)
    m = ((ring[..., None] <= radii) / (radii + 1) ** 2).sum(-1)
    return m / m.norm().clamp_min(1e-12)


def _pattern(s: int, gen: torch.Generator | None, device: torch.device, dtype: torch.dtype):
    """The L2 square's s×s pattern: two bumps of opposite sign, one above the other (or side
    by side, at random), unit L2 norm (Andriushchenko et al. 2020)."""
    half = s // 2
    m = torch.zeros(s, s, device=device, dtype=dtype)
    if half:
        m[:half] = _bump(half, s, device, dtype)
    m[half:] = -_bump(s - half, s, device, dtype)
    if int(torch.randint(0, 2, (1,), generator=gen, device=device)):
        m = m.T
    return m / m.norm().clamp_min(1e-12)


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack (Andriushchenko et al. 2020): black-box random search, L∞ or L2.

    Args:
        eps: radius ε of the ball.
        norm: "linf" or "l2".
        n_queries: query budget per sample (AutoAttack: 5000), the initial query included.
        restarts: runs from fresh random initializations on the samples not yet fooled.
        p_init: initial fraction of pixels a square covers (AutoAttack: 0.8).
        seed: seeds the random search.

    After a call, ``queries_`` holds the model queries each sample used (N,), int64: a
    fooled sample stops being queried.

    Example:
        >>> attack = Square(eps=0.1, n_queries=1000)
        >>> x_adv = attack(model, x, y); attack.queries_.float().mean()
    """

    name = "square"
    iterative = True
    deterministic = False

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        n_queries: int = 5000,
        restarts: int = 1,
        p_init: float = 0.8,
        seed: int | None = 0,
    ) -> None:
        self.norm, self.eps = check_ball(norm, eps)
        self.n_queries = check_int(n_queries, "n_queries", minimum=1)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        self.p_init = check_positive(p_init, "p_init")
        if self.p_init > 1:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init}")
        self.seed = check_seed(seed)
        self.queries_: torch.Tensor | None = None

    @classmethod
    def _constructor_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = peer_kwargs(kwargs)
        for peer, ours in (("loss", "margin"), ("resc_schedule", True)):
            if peer in kwargs and kwargs.pop(peer) != ours:
                raise ValueError(f"Square supports only {peer}={ours!r} (the paper's setting)")
        return super()._constructor_kwargs(kwargs)

    @torch.no_grad()
    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        self.queries_ = queries
        if not self.eps:
            return x.clone()
        gen = self._generator(x.device)
        labels = y if target is None else target
        best = x.clone()
        margin = margin_loss(model(x), labels, targeted=target is not None, kappa=float("inf"))
        queries += 1
        best_margin = margin.clone()
        for _ in range(self.restarts):
            todo = (best_margin >= 0).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            adv, m, q = self._run(model, x[todo], labels[todo], target is not None, gen)
            better = m < best_margin[todo]
            best[todo[better]] = adv[better]
            best_margin[todo[better]] = m[better]
            queries[todo] += q
        return best

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        labels: torch.Tensor,
        targeted: bool,
        gen: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run: (best x, its margin, queries used) per sample."""
        init = self._init_linf if self.norm == "linf" else self._init_l2
        x_best = init(x, gen)
        margin = margin_loss(model(x_best), labels, targeted=targeted, kappa=float("inf"))
        used = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        propose = self._propose_linf if self.norm == "linf" else self._propose_l2
        for it in range(1, self.n_queries - 1):  # the clean and the initial queries count
            active = (margin >= 0).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            cand = propose(x[active], x_best[active], it, gen)
            m = margin_loss(model(cand), labels[active], targeted=targeted, kappa=float("inf"))
            used[active] += 1
            better = m < margin[active]
            x_best[active[better]] = cand[better]
            margin[active[better]] = m[better]
        return x_best, margin, used

    # -- L∞ -----------------------------------------------------------------------------

    def _signs(self, shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None):
        r = torch.randint(0, 2, shape, generator=gen, device=x.device)
        return (2 * r - 1).to(x.dtype)

    def _init_linf(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Vertical stripes: ±ε per (sample, channel, column)."""
        n, c, _, w = x.shape
        eps = float(self.eps or 0.0)
        return (x + eps * self._signs((n, c, 1, w), x, gen)).clamp(0.0, 1.0)

    def _window(
        self,
        x: torch.Tensor,
        it: int,
        gen: torch.Generator | None,
        *,
        cap: int = 0,
        side: int | None = None,
    ) -> tuple[int, int, int]:
        """Side and corner of this iteration's square (one position for the batch); ``cap``
        keeps the side that far below the image's (L2 moves mass between two windows)."""
        _, _, h, w = x.shape
        p = square_fraction(self.p_init, it, self.n_queries)
        s = side or max(round(math.sqrt(p * h * w)), 1 + 2 * cap)
        s = max(min(s + cap * (1 - s % 2), h - cap, w - cap), 1)  # L2: odd, at least 3
        top = int(torch.randint(0, h - s + 1, (1,), generator=gen, device=x.device))
        left = int(torch.randint(0, w - s + 1, (1,), generator=gen, device=x.device))
        return s, top, left

    def _propose_linf(
        self, x: torch.Tensor, x_cur: torch.Tensor, it: int, gen: torch.Generator | None
    ) -> torch.Tensor:
        s, top, left = self._window(x, it, gen)
        eps = float(self.eps or 0.0)
        n, c = x.shape[:2]
        cand = x_cur.clone()
        win = (slice(None), slice(None), slice(top, top + s), slice(left, left + s))
        signs = self._signs((n, c, 1, 1), x, gen)
        cand[win] = (x[win] + eps * signs).clamp(0.0, 1.0)
        # a proposal equal to the current point would waste the query: flip its signs
        same = (cand[win] == x_cur[win]).flatten(1).all(1)
        if bool(same.any()):
            cand[win][same] = (x[win][same] - eps * signs[same]).clamp(0.0, 1.0)
        return cand

    # -- L2 -----------------------------------------------------------------------------

    def _init_l2(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """A grid of bumps with random signs, rescaled to ‖δ‖₂ = ε."""
        n, c, h, w = x.shape
        s = max(min(h, w) // 5, 1)
        delta = torch.zeros_like(x)
        for top in range(0, h - s + 1, s):
            for left in range(0, w - s + 1, s):
                signs = self._signs((n, c, 1, 1), x, gen)
                bump = _pattern(s, gen, x.device, x.dtype)
                delta[..., top : top + s, left : left + s] += bump * signs
        delta = delta / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x + float(self.eps or 0.0) * delta).clamp(0.0, 1.0)

    def _propose_l2(
        self, x: torch.Tensor, x_cur: torch.Tensor, it: int, gen: torch.Generator | None
    ) -> torch.Tensor:
        """Move the mass of two windows into the first, as a fresh bump plus the old window's
        pattern, so that ‖δ‖₂ stays ε (the paper's Algorithm 3)."""
        s, top, left = self._window(x, it, gen, cap=1)
        _, top2, left2 = self._window(x, it, gen, cap=1, side=s)
        eps = float(self.eps or 0.0)
        n, c, h, w = x.shape
        delta = x_cur - x
        mask1 = torch.zeros(1, 1, h, w, device=x.device, dtype=x.dtype)
        mask1[..., top : top + s, left : left + s] = 1
        mask2 = torch.zeros_like(mask1)
        mask2[..., top2 : top2 + s, left2 : left2 + s] = 1
        union = torch.maximum(mask1, mask2)
        norm_all = delta.flatten(1).norm(dim=1)
        norm_union = (delta * union).flatten(1).norm(dim=1)
        win = (slice(None), slice(None), slice(top, top + s), slice(left, left + s))
        old = delta[win]
        old = old / old.flatten(2).norm(dim=2).clamp_min(1e-12)[..., None, None]
        new = _pattern(s, gen, x.device, x.dtype) * self._signs((n, c, 1, 1), x, gen) + old
        new = new / new.flatten(2).norm(dim=2).clamp_min(1e-12)[..., None, None]
        # the budget the two windows may use: what they hold plus what the image has left
        room = ((eps**2 - norm_all**2).clamp_min(0) / c + norm_union**2 / c).sqrt()
        delta = delta * (1 - union)
        delta[win] = new * room.view(-1, 1, 1, 1)
        # rescaled to ‖δ‖₂ = ε before the box: the budget is used in full
        size = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (x + delta * (eps / size)).clamp(0.0, 1.0)
