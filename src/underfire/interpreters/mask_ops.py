"""The image operations of MASK (:mod:`underfire.interpreters.mask`): Gaussian blur, the TV
term, the upsample-and-blur operator of coarse masks, sub-pixel shifts and the default mask size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from underfire.interpreters.base import resize_maps

__all__ = [
    "default_mask_size",
    "gaussian_blur",
    "perturb",
    "shift_images",
    "total_variation",
    "upsample_operator",
]


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
    """Per-sample Σ_u ‖∇m(u)‖_β^β = Σ|∂_h m|^β + Σ|∂_w m|^β (forward differences) of (N, 1, s, s)
    masks, shape (N,): the paper's TV term, a *sum* over elements."""
    dh = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta).flatten(1).sum(1)
    dw = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta).flatten(1).sum(1)
    return dh + dw


def upsample_operator(
    size: int, out: int, sigma: float, *, dtype: torch.dtype, device: torch.device | str
) -> torch.Tensor:
    """The (out, size) matrix A of 1-D bilinear upsampling (align_corners=False) followed by a
    Gaussian blur σ with replicate padding. Both are linear and separable, so the 2-D
    upsample-and-blur of a mask m is A_H m A_Wᵀ (two small matmuls instead of interpolate +
    two convolutions per step)."""
    eye = torch.eye(size, dtype=dtype, device=device).view(size, 1, size, 1)
    cols = gaussian_blur(
        F.interpolate(eye, size=(out, 1), mode="bilinear", align_corners=False), sigma
    )
    return cols.view(size, out).T.contiguous()


def shift_images(
    padded: torch.Tensor, pad: int, shift: tuple[float, float], size: tuple[int, int]
) -> torch.Tensor:
    """The images (padded by ``pad`` ≥ ⌈|τ|⌉ + 1 pixels on each side, replicate) translated by
    ``shift`` τ = (dy, dx) pixels: out(u) = x(u − τ). A fractional τ interpolates linearly
    between the two neighbouring integer shifts along each axis (bilinear), so sub-pixel jitter
    works on small inputs."""
    h, w = size

    def along(t: torch.Tensor, d: float, dim: int, n: int) -> torch.Tensor:
        i0 = math.floor(d)
        f = d - i0
        a = t.narrow(dim, pad - i0, n)
        if f == 0:
            return a
        return a + f * (t.narrow(dim, pad - i0 - 1, n) - a)

    rows = along(padded, shift[0], padded.dim() - 2, h)
    return along(rows, shift[1], padded.dim() - 1, w)


def perturb(x: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Φ(x, m) = x ⊙ M + reference ⊙ (1 − M), M = mask upsampled bilinearly to x's size (no mask
    blur; :meth:`Mask.upsample` gives the interpreter's M)."""
    up = resize_maps(mask, (x.shape[-2], x.shape[-1]))
    return x * up + reference * (1 - up)


def default_mask_size(side: int) -> int:
    """Coarse mask side for an input side: 28 at 224 (the paper), 7 at 28, 4 at 8."""
    return min(side, min(28, max(4, side // 4)))
