"""Measures used across experiments. Map measures follow ADV² (Zhang et al., "Interpretable Deep
Learning under Fire", USENIX Security 2020): L1 distance, top-k% IoU and rank correlation of
two interpretation maps. All are batched torch functions returning one value per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from underfire.core.validation import check_float, check_labels

__all__ = [
    "DEFAULT_KS",
    "accuracy",
    "l1_distance",
    "map_metrics",
    "rank",
    "spearman",
    "success_rate",
    "topk_iou",
    "topk_mask",
]

# Fractions of pixels for the top-k IoU, averaged (ADV² varies k over several values).
DEFAULT_KS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def _pair(
    a: torch.Tensor, b: torch.Tensor, *, finite: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    for name, m in (("a", a), ("b", b)):
        if not isinstance(m, torch.Tensor):
            raise TypeError(f"map {name} must be a torch.Tensor, got {type(m).__name__}")
        if not m.is_floating_point():
            raise TypeError(f"map {name} must be a floating tensor, got dtype {m.dtype}")
        if finite and m.numel() and not bool(torch.isfinite(m.detach()).all()):
            raise ValueError(f"map {name} contains NaN or infinite values")
    if a.shape != b.shape:
        raise ValueError(
            f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dim() < 2:
        raise ValueError(f"maps must be batched (N, ...), got shape {tuple(a.shape)}")
    return a.flatten(1), b.flatten(1)


def l1_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two batches of [0, 1] maps, per sample.

    Args:
        a, b: (N, ...) maps (e.g. (N, 1, H, W)), normalized to [0, 1].

    Returns:
        (N,) values in [0, 1]; differentiable.
    """
    fa, fb = _pair(a, b)
    return (fa - fb).abs().mean(dim=1)


def topk_mask(m: torch.Tensor, k: float) -> torch.Tensor:
    """Boolean (N, P) mask of the ⌈k·P⌉ largest entries of each flattened map (ties: lowest index)."""
    k = check_float(k, "k", low=0.0, high=1.0, low_inclusive=False)
    if m.dim() < 2:
        raise ValueError(f"maps must be batched (N, ...), got shape {tuple(m.shape)}")
    flat = m.flatten(1)
    if flat.shape[1] == 0:
        raise ValueError("maps have no pixels; top-k needs at least one")
    count = max(1, math.ceil(k * flat.shape[1] - 1e-9))
    idx = flat.topk(count, dim=1, sorted=False).indices
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)


def topk_iou(
    a: torch.Tensor, b: torch.Tensor, ks: Sequence[float] | float = DEFAULT_KS
) -> torch.Tensor:
    """Intersection over union of the top-k% pixels of two maps, averaged over ``ks``.

    Args:
        a, b: (N, ...) maps.
        ks: fraction(s) of pixels, e.g. 0.1 for the top 10 %.

    Returns:
        (N,) mean IoU in [0, 1] (1 = the same most-important pixels). Not differentiable.
    """
    fa, fb = _pair(a, b, finite=True)
    ks = [ks] if isinstance(ks, (int, float)) else list(ks)
    if not ks:
        raise ValueError("ks must hold at least one fraction")
    ks = [
        check_float(k, f"ks[{i}]", low=0.0, high=1.0, low_inclusive=False) for i, k in enumerate(ks)
    ]
    total = torch.zeros(fa.shape[0], device=fa.device, dtype=torch.float32)
    for k in ks:
        ma, mb = topk_mask(fa.detach(), k), topk_mask(fb.detach(), k)
        inter = (ma & mb).sum(1).float()
        union = (ma | mb).sum(1).float()
        total += inter / union
    return total / len(ks)


def rank(values: torch.Tensor) -> torch.Tensor:
    """Ranks (1-based, ties get the average rank, as scipy's rankdata) along dim 1 of (N, P)."""
    sorted_vals = values.sort(dim=1).values.contiguous()
    v = values.contiguous()
    lo = torch.searchsorted(sorted_vals, v, right=False)
    hi = torch.searchsorted(sorted_vals, v, right=True)
    return (lo + hi + 1).to(torch.float64 if values.dtype == torch.float64 else torch.float32) / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of two maps, per sample (Pearson correlation of the ranks).

    Returns:
        (N,) values in [−1, 1]; 0 where a map is constant. Not differentiable.
    """
    fa, fb = _pair(a, b, finite=True)
    ra, rb = rank(fa.detach()), rank(fb.detach())
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    denom = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    return torch.where(
        denom > 0, (ra * rb).sum(1) / denom.clamp_min(1e-30), torch.zeros_like(denom)
    )


def map_metrics(
    a: torch.Tensor, b: torch.Tensor, ks: Sequence[float] = DEFAULT_KS
) -> dict[str, float]:
    """Batch means of :func:`l1_distance`, :func:`topk_iou` and :func:`spearman`."""
    return {
        "l1": float(l1_distance(a, b).mean()),
        "iou": float(topk_iou(a, b, ks).mean()),
        "spearman": float(spearman(a, b).mean()),
    }


def _check_scores(logits: object, y: object, target: object = None) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(
            "logits must be a (N, K) tensor, got "
            + (
                f"shape {tuple(logits.shape)}"
                if isinstance(logits, torch.Tensor)
                else type(logits).__name__
            )
        )
    k = logits.shape[1]
    check_labels(y, logits.shape[0], "y", num_classes=k)
    if target is not None:
        check_labels(target, logits.shape[0], "target", num_classes=k)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``logits`` (N, K) whose argmax equals ``y`` (NaN for N = 0)."""
    _check_scores(logits, y)
    return float((logits.argmax(1) == y).float().mean()) if y.numel() else float("nan")


def success_rate(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
) -> float:
    """Attack success: prediction equals ``target`` (targeted) or differs from ``y`` (untargeted).

    NaN for N = 0."""
    _check_scores(logits, y, target)
    pred = logits.argmax(1)
    hit = pred == target if target is not None else pred != y
    return float(hit.float().mean()) if hit.numel() else float("nan")
