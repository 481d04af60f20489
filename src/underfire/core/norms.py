"""Norm objects: the geometry of a perturbation budget, shared by every iterative attack.

An attack bounded in an Lp ball needs four operations, each defined once here:
``project`` (onto the ε-ball, per sample), ``random_start`` (a uniform point of the ball),
``direction`` (the steepest-ascent direction of a gradient under the norm: its sign for L∞,
the gradient over its L2 norm for L2) and ``distance`` (per-sample norm of a difference).
An iterative attack's steps use :meth:`Norm.ball`: the feasible set B(x, ε) ∩ [0, 1] of one
batch, set up once, whose ``project_`` maps each iterate back into it.

>>> norm = get_norm("linf")
>>> x_adv = x + norm.project(x_adv - x, eps)
>>> ball = norm.ball(x, eps)  # in a loop:
>>> x_adv = ball.project_(x_adv + alpha * norm.direction(grad))
"""

from __future__ import annotations

import math

import torch

__all__ = ["L2", "LINF", "NORMS", "Ball", "L2Norm", "LinfBall", "LinfNorm", "Norm", "get_norm"]

_TINY = 1e-12


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class Norm:
    """The operations an attack needs from its norm; subclasses fill them."""

    name: str = ""

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-sample ‖a − b‖, shape (N,)."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """``delta`` (N, ...) projected onto the ε-ball, per sample."""
        raise NotImplementedError

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Steepest-ascent direction of unit norm for ``grad`` (N, ...)."""
        raise NotImplementedError

    def random_start(
        self, x: torch.Tensor, eps: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A uniformly random point of the ε-ball around ``x``, clipped to [0, 1]."""
        raise NotImplementedError

    def ball(self, x: torch.Tensor, eps: float) -> Ball:
        """The feasible set B(x, ε) ∩ [0, 1] of the batch ``x``, for an attack's iterates."""
        return Ball(self, x, eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Ball:
    """B(x, ε) ∩ [0, 1] of one batch ``x`` (N, ...) under ``norm``: where iterates must stay.

    :meth:`project_` is ``x + norm.project(z - x, ε)`` clipped to [0, 1] (exact for L∞; for
    L2 the clip after the ball's projection is the usual approximation of the projection onto
    the intersection).
    """

    def __init__(self, norm: Norm, x: torch.Tensor, eps: float) -> None:
        self.norm, self.x, self.eps = norm, x, eps

    def project_(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` projected into the set, per sample; ``index`` selects the rows of ``x`` that
        ``z`` holds (an attack's still-active samples). May work in place on ``z`` (a tensor
        that needs no grad): use the returned tensor."""
        x0 = self.x if index is None else self.x[index]
        return (x0 + self.norm.project(z - x0, self.eps)).clamp_(0.0, 1.0)


class LinfNorm(Norm):
    """L∞: a box of half-width ε around each pixel."""

    name = "linf"

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).flatten(1).abs().amax(1) if a.numel() else a.new_zeros(a.shape[0])

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        return delta.clamp(-eps, eps)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def random_start(
        self, x: torch.Tensor, eps: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + eps * (2 * noise - 1)).clamp_(0.0, 1.0)

    def ball(self, x: torch.Tensor, eps: float) -> LinfBall:
        return LinfBall(self, x, eps)


class LinfBall(Ball):
    """The L∞ ball ∩ [0, 1] is a box, [max(x − ε, 0), min(x + ε, 1)] per pixel: its bounds
    are computed once, and the projection is two in-place clamps (no ``z − x`` round trip,
    so a feasible ``z`` comes back bit for bit, a clipped one as the box's bound)."""

    def __init__(self, norm: Norm, x: torch.Tensor, eps: float) -> None:
        super().__init__(norm, x, eps)
        self.lo = (x - eps).clamp_(min=0.0)
        self.hi = (x + eps).clamp_(max=1.0)

    def project_(self, z: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        lo, hi = (self.lo, self.hi) if index is None else (self.lo[index], self.hi[index])
        return torch.maximum(torch.minimum(z, hi, out=z), lo, out=z)


class L2Norm(Norm):
    """L2: a Euclidean ball of radius ε per sample."""

    name = "l2"

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).flatten(1).norm(p=2, dim=1)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        size = delta.flatten(1).norm(p=2, dim=1).clamp_min(_TINY)
        return delta * _per_sample((eps / size).clamp(max=1.0), delta)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        size = grad.flatten(1).norm(p=2, dim=1).clamp_min(_TINY)
        return grad / _per_sample(size, grad)

    def random_start(
        self, x: torch.Tensor, eps: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # uniform in the ball's volume: a uniform direction, radius ε·u^(1/d)
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = self.direction(direction)
        d = math.prod(x.shape[1:]) or 1
        u = torch.rand((x.shape[0],), generator=generator, device=x.device, dtype=x.dtype)
        return (x + direction * _per_sample(eps * u ** (1.0 / d), x)).clamp_(0.0, 1.0)


LINF = LinfNorm()
L2 = L2Norm()
NORMS: dict[str, Norm] = {LINF.name: LINF, L2.name: L2}


def get_norm(norm: str | Norm) -> Norm:
    """The norm object for a name ("linf", "l2") or the object itself."""
    if isinstance(norm, Norm):
        return norm
    if isinstance(norm, str) and norm.strip().lower() in NORMS:
        return NORMS[norm.strip().lower()]
    raise ValueError(f"norm must be one of {tuple(NORMS)}, got {norm!r}")
