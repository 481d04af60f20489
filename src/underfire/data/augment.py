"""Training-time data augmentation, seeded per (seed, epoch, sample).

``"crop-flip"`` is the standard CIFAR recipe of He et al. (2016, §4.2): pad each image with 4
zero pixels on every side, take a random crop of the original size, and flip it horizontally
with probability 1/2.

The random draws of an epoch are made for every sample of the data set at once, from a
generator seeded by ``(seed, epoch)`` alone, and looked up by each sample's index in the data
set. A sample's augmentation therefore depends on nothing else: not on the batch it lands in,
nor on the rank that trains it (a sharded run sees the single-process batches), nor on whether
the run was resumed mid-epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AUGMENTATIONS", "CropFlip", "check_augment", "crop_flip", "epoch_augmentation"]

#: Augmentations :func:`epoch_augmentation` knows (``"none"``: the images as they are).
AUGMENTATIONS = ("none", "crop-flip")

#: Zero pixels added on each side before the random crop (He et al. 2016).
PAD = 4

# Offset of the augmentation's generator seeds from the shuffle's (``seed * 100_003 + epoch``
# in :func:`underfire.train.batches`), so the two streams never share a seed.
_STREAM = 1 << 52


def check_augment(name: str) -> str:
    """``name`` if it is one of :data:`AUGMENTATIONS`; else one ValueError naming them."""
    if name not in AUGMENTATIONS:
        raise ValueError(
            f"augment must be one of {', '.join(repr(a) for a in AUGMENTATIONS)}, got {name!r}"
        )
    return name


def crop_flip(
    x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor, pad: int = PAD
) -> torch.Tensor:
    """Each image of ``x`` cropped from its zero-padded copy and possibly mirrored.

    Args:
        x: images ``(N, C, H, W)``.
        offsets: ``(N, 2)`` integers in ``[0, 2·pad]``: the crop's top row and left column in
            the padded image (``(pad, pad)`` keeps the image where it is).
        flips: ``(N,)`` booleans: mirror the crop left to right.
        pad: zero pixels added on each side.

    Returns:
        A new ``(N, C, H, W)`` tensor; one gather for the whole batch (crop and flip together).
    """
    if x.dim() != 4:
        raise ValueError(
            f"crop-flip augmentation needs image batches (N, C, H, W), got shape "
            f"{tuple(x.shape)}; use augment='none' for data that are not images"
        )
    n, _, h, w = x.shape
    if offsets.shape != (n, 2) or flips.shape != (n,):
        raise ValueError(
            f"crop_flip needs offsets of shape ({n}, 2) and flips of shape ({n},), got "
            f"{tuple(offsets.shape)} and {tuple(flips.shape)}"
        )
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    j = torch.arange(w, device=x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    # a mirrored crop reads its columns from right to left
    cols = offsets[:, 1, None] + torch.where(flips[:, None], w - 1 - j, j)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice: the result is (N, H, W, C)
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class CropFlip:
    """The crop offsets and flips of every sample of a data set in one epoch."""

    offsets: torch.Tensor  # (n, 2) int64 in [0, 2·pad]
    flips: torch.Tensor  # (n,) bool
    pad: int = PAD

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The augmented batch ``x`` whose samples have data-set indices ``index``."""
        return crop_flip(x, self.offsets[index], self.flips[index], self.pad)


def epoch_augmentation(name: str, n: int, *, seed: int, epoch: int) -> CropFlip | None:
    """The augmentation of ``epoch`` for a data set of ``n`` samples (None for ``"none"``),
    drawn from a generator seeded by ``(seed, epoch)`` only."""
    if check_augment(name) == "none":
        return None
    generator = torch.Generator().manual_seed((_STREAM + seed * 100_003 + epoch) % (1 << 64))
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    return CropFlip(offsets, flips)
