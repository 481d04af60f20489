"""The reference image MASK blends towards where the mask deletes: Fong & Vedaldi's three
perturbations (ICCV 2017, §3.2), and the per-image choice among them.

* ``"blur"``: a Gaussian blur of the image, σ from :meth:`Mask.sizes` (the paper's default);
* ``"constant"``: the image's mean colour, per channel (the paper's μ₀);
* ``"noise"``: the mean colour plus i.i.d. Gaussian noise with the image's per-channel standard
  deviation, clamped to [0, 1]. The noise pattern is drawn once from the interpreter's seed and
  shared by the batch, so an image's reference does not depend on its batch-mates.

A deletion cannot be found when the reference itself is still classified as the class: deleting
everything then keeps the class. With ``perturbation="auto"`` such an image tries the next
perturbation in :data:`PERTURBATIONS` order; an image for which every reference keeps the class
stays with the first (and is flagged as not found).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from underfire.interpreters.mask_ops import gaussian_blur

__all__ = [
    "PERTURBATIONS",
    "Perturbation",
    "choose_perturbations",
    "reference_image",
    "reference_images",
]

#: The perturbations in the order ``"auto"`` tries them.
PERTURBATIONS: tuple[str, ...] = ("blur", "constant", "noise")
Perturbation = Literal["auto", "blur", "constant", "noise"]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, sigma)


def _mean_colour(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x)


def _noise(x: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(x.shape[1:], generator=gen, dtype=torch.float64).to(x.device, x.dtype)
    std = x.std(dim=(2, 3), keepdim=True) if x.shape[-1] * x.shape[-2] > 1 else x * 0
    return (x.mean(dim=(2, 3), keepdim=True) + std * z).clamp(0, 1)


def reference_image(x: torch.Tensor, kind: str, sigma: float, seed: int) -> torch.Tensor:
    """The ``kind`` reference of every image in ``x`` (differentiable in ``x``)."""
    if kind == "blur":
        return _blur(x, sigma)
    if kind == "constant":
        return _mean_colour(x)
    if kind == "noise":
        return _noise(x, seed)
    raise ValueError(f"perturbation must be one of {('auto', *PERTURBATIONS)}, got {kind!r}")


def reference_images(x: torch.Tensor, kinds: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Per image, the reference of its perturbation ``kinds`` (indices into
    :data:`PERTURBATIONS`), differentiable in ``x``."""
    used = sorted(set(kinds.tolist()))
    if len(used) == 1:
        return reference_image(x, PERTURBATIONS[used[0]], sigma, seed)
    out = torch.zeros_like(x)
    for k in used:
        pick = (kinds == k).view(-1, 1, 1, 1).to(x.device)
        out = torch.where(pick, reference_image(x, PERTURBATIONS[k], sigma, seed), out)
    return out


@torch.no_grad()
def choose_perturbations(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    candidates: Sequence[str],
    sigma: float,
    seed: int,
) -> torch.Tensor:
    """Per image, the first of ``candidates`` whose reference the model does not classify as
    ``target`` (the first candidate when none qualifies); (N,) indices into
    :data:`PERTURBATIONS`."""
    codes = [PERTURBATIONS.index(c) for c in candidates]
    kinds = torch.full((x.shape[0],), codes[0], dtype=torch.long, device=x.device)
    if len(codes) == 1 or x.shape[0] == 0:
        return kinds
    open_ = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for code in codes:
        idx = open_.nonzero().flatten()
        if idx.numel() == 0:
            break
        ref = reference_image(x[idx], PERTURBATIONS[code], sigma, seed)
        keeps = model(ref).argmax(dim=1) == target[idx]
        kinds[idx[~keeps]] = code
        open_[idx[~keeps]] = False
    return kinds
