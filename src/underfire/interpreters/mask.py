"""MASK: meaningful perturbation (Fong & Vedaldi, "Interpretable Explanations of Black Boxes by
Meaningful Perturbation", ICCV 2017), optimized for a whole batch at once.

For each image, find a coarse mask m ∈ [0,1]^{s×s} (1 = keep, 0 = replace by the blurred
image) minimizing the deletion-game objective

    p_c(Φ(x, m)) + λ₁·mean|1 − m| + λ₂·TV_β(m),    Φ(x, m) = x ⊙ M + blur(x) ⊙ (1 − M),

with M the mask upsampled bilinearly to H×W, Φ randomly jittered (shifted) at each step,
and Adam (lr 0.1), projecting m onto [0,1] after each step. The explanation is the deleted
region 1 − M (high = the evidence for class c).

Batching: the batch objective is the *sum* of the per-image objectives and Adam acts
elementwise, so every image's mask follows exactly the trajectory it would follow alone
(the jitter shifts are drawn from ``seed`` and shared by the batch); only floating-point
summation order differs.

Choices where the paper leaves room (documented in docs/interpreters.md): λ₁ is applied to
the *mean* of |1−m| (0.05, ≈ the paper's 1e-4 on a 28×28 sum), TV is the mean of
|∇m|^β with β = 3 and λ₂ = 0.2, the mask starts at 1 (nothing deleted), p_c is the softmax
probability. Sizes adapt to the input side H: coarse side min(28, max(4, H // 4)), capped at H
(28 at 224, 7 at 28, 4 at 8×8 digits); blur σ = max(1.5, H / 22) (≈ 10 at 224, as in the
paper); jitter round(H / 56) pixels (4 at 224, none on tiny inputs).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.validation import check_positive
from underfire.interpreters.base import INTERPRETERS, Interpreter, class_scores, resize_maps

__all__ = ["Mask", "default_mask_size", "gaussian_blur", "perturb", "total_variation"]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, replicate padding, kernel 2⌈3σ⌉+1."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (k / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def total_variation(m: torch.Tensor, beta: float = 3.0) -> torch.Tensor:
    """Per-sample TV_β(m) = mean|∂_h m|^β + mean|∂_w m|^β of (N, 1, s, s) masks, shape (N,)."""
    dh = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta).flatten(1).mean(1)
    dw = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta).flatten(1).mean(1)
    return dh + dw


def perturb(x: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Φ(x, m) = x ⊙ M + reference ⊙ (1 − M), M = mask upsampled to x's size."""
    up = resize_maps(mask, tuple(x.shape[-2:]))
    return x * up + reference * (1 - up)


def default_mask_size(side: int) -> int:
    """Coarse mask side for an input side: 28 at 224 (the paper), 7 at 28, 4 at 8."""
    return min(side, min(28, max(4, side // 4)))


@INTERPRETERS.register("mask")
class Mask(Interpreter):
    """Meaningful-perturbation MASK interpreter (Fong & Vedaldi 2017), batched.

    ``attribute`` returns the deleted region 1 − M, (N, 1, H, W) in [0, 1]; the map is its
    per-sample min–max normalization. :meth:`optimize` exposes the coarse masks and accepts a
    warm start (used by the bi-level ADV² attack); with ``create_graph=True`` the whole
    optimization is unrolled and differentiable w.r.t. ``x`` (use few steps).

    Args:
        steps: optimizer iterations (paper: 300).
        lr: Adam learning rate (paper: 0.1).
        l1: λ₁, weight of mean|1 − m|.
        tv: λ₂, weight of TV_β(m).
        tv_beta: β of the TV term.
        mask_size: coarse mask side (None: :func:`default_mask_size`).
        blur_sigma: σ of the blurred reference (None: max(1.5, H/22)).
        jitter: maximum shift in pixels of Φ per step (None: round(H/56)).
        init: initial mask value (1 = delete nothing).
        score: "prob" (softmax probability, the paper) or "logit".
        seed: seed of the jitter shifts (same seed → same masks).
    """

    name = "mask"
    absolute = False

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 0.1,
        l1: float = 0.05,
        tv: float = 0.2,
        tv_beta: float = 3.0,
        mask_size: int | None = None,
        blur_sigma: float | None = None,
        jitter: int | None = None,
        init: float = 1.0,
        score: Literal["prob", "logit"] = "prob",
        seed: int = 0,
    ) -> None:
        if steps < 0:
            raise ValueError(f"steps must be ≥ 0, got {steps}")
        if score not in ("prob", "logit"):
            raise ValueError(f"score must be 'prob' or 'logit', got {score!r}")
        if mask_size is not None and mask_size < 1:
            raise ValueError(f"mask_size must be ≥ 1, got {mask_size}")
        if not 0 <= init <= 1:
            raise ValueError(f"init must be in [0, 1], got {init}")
        self.steps = int(steps)
        self.lr = check_positive(lr, "lr")
        self.l1 = check_positive(l1, "l1", allow_zero=True)
        self.tv = check_positive(tv, "tv", allow_zero=True)
        self.tv_beta = check_positive(tv_beta, "tv_beta")
        self.mask_size = mask_size
        self.blur_sigma = blur_sigma
        self.jitter = jitter
        self.init = float(init)
        self.score = score
        self.seed = int(seed)

    # -- sizes adapted to the input -------------------------------------------------------
    def sizes(self, x: torch.Tensor) -> tuple[int, float, int]:
        """(coarse mask side, blur σ, jitter) for inputs like ``x``."""
        side = min(x.shape[-2:])
        size = self.mask_size or default_mask_size(side)
        sigma = self.blur_sigma if self.blur_sigma is not None else max(1.5, side / 22)
        jitter = self.jitter if self.jitter is not None else round(side / 56)
        return min(size, side), sigma, jitter

    def objective(
        self,
        model: nn.Module,
        x: torch.Tensor,
        reference: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor,
        shift: tuple[int, int] = (0, 0),
    ) -> torch.Tensor:
        """Per-image deletion objective (N,) of coarse masks ``mask`` (N, 1, s, s)."""
        phi = perturb(x, mask, reference)
        if shift != (0, 0):
            phi = torch.roll(phi, shifts=shift, dims=(2, 3))
        logits = model(phi)
        score = class_scores(logits.softmax(dim=1) if self.score == "prob" else logits, target)
        return (
            score
            + self.l1 * (1 - mask).abs().flatten(1).mean(1)
            + self.tv * total_variation(mask, self.tv_beta)
        )

    def optimize(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        init: torch.Tensor | None = None,
        steps: int | None = None,
        create_graph: bool = False,
    ) -> torch.Tensor:
        """Run the mask optimization; returns coarse masks (N, 1, s, s) in [0, 1].

        Called directly (e.g. by attacks), the caller is responsible for eval mode.

        Args:
            model: classifier (eval mode).
            x: (N, C, H, W) images in [0, 1].
            target: (N,) classes.
            init: warm-start masks (N, 1, s, s); default a constant ``self.init``.
            steps: override ``self.steps``.
            create_graph: unroll the optimizer so the result is differentiable w.r.t. ``x``.
        """
        steps = self.steps if steps is None else steps
        size, sigma, jitter = self.sizes(x)
        xs = x if create_graph else x.detach()
        reference = gaussian_blur(xs, sigma)
        if init is None:
            m = torch.full((x.shape[0], 1, size, size), self.init, device=x.device, dtype=x.dtype)
        else:
            if init.shape != (x.shape[0], 1, size, size):
                raise ValueError(
                    f"init must have shape {(x.shape[0], 1, size, size)}, got {tuple(init.shape)}"
                )
            m = init if create_graph else init.detach()
        shifts = self._shifts(steps, jitter)
        # Adam written out (elementwise, as torch.optim.Adam) so that the same code runs detached
        # or unrolled with create_graph; sqrt(v + 1e-24) keeps the unrolled graph finite at g = 0.
        b1, b2, eps = 0.9, 0.999, 1e-8
        mom = torch.zeros_like(m)
        vel = torch.zeros_like(m)
        for t in range(1, steps + 1):
            m_in = m if create_graph and m.requires_grad else m.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = self.objective(model, xs, reference, m_in, target, shifts[t - 1]).sum()
                (g,) = torch.autograd.grad(loss, m_in, create_graph=create_graph)
            if not create_graph:
                g = g.detach()
            mom = b1 * mom + (1 - b1) * g
            vel = b2 * vel + (1 - b2) * g * g
            m_hat = mom / (1 - b1**t)
            v_hat = vel / (1 - b2**t)
            m = (m_in - self.lr * m_hat / (torch.sqrt(v_hat + 1e-24) + eps)).clamp(0, 1)
            if not create_graph:
                m = m.detach()
        return m

    def _shifts(self, steps: int, jitter: int) -> list[tuple[int, int]]:
        if jitter <= 0 or steps == 0:
            return [(0, 0)] * steps
        gen = torch.Generator().manual_seed(self.seed)  # CPU: the same shifts on every device
        draws = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen).tolist()
        return [(int(a), int(b)) for a, b in draws]

    def mask_to_map(self, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Coarse keep-masks (N, 1, s, s) → deleted-region saliency 1 − M of shape (N, 1, H, W)."""
        return 1 - resize_maps(mask, size)

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        m = self.optimize(model, x, target, create_graph=create_graph)
        return self.mask_to_map(m, (x.shape[-2], x.shape[-1]))

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return attr
