"""The per-sample record of one ADV² call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ADV2Result", "confidence_summary"]


def confidence_summary(
    success: torch.Tensor, confidence: torch.Tensor
) -> dict[str, float | int | None]:
    """n, success rate, and the mean target confidence over the successful samples
    (``confidence_successful``: how Zhang et al. report it; None when none succeeded) and over
    all samples (``confidence``)."""
    n = int(success.numel())
    hit = success.bool()
    return {
        "n": n,
        "success_rate": float(hit.float().sum()) / max(1, n),
        "confidence": float(confidence.float().mean()) if n else 0.0,
        "confidence_successful": float(confidence[hit].float().mean()) if bool(hit.any()) else None,
    }


@dataclass
class ADV2Result:
    """Per-sample outcome of one ADV² call (all tensors (N,), on the input's device).

    Attributes:
        target: the target classes t.
        prediction: f(x_adv).
        success: f(x_adv) = t (the paper's attack success).
        confidence: softmax probability of t at x_adv (the paper averages it over the
            successful samples: :meth:`summary`'s ``confidence_successful``).
        l1: mean absolute difference between g(x_adv) and m_t (both [0, 1] maps).
        iou: top-k IoU of g(x_adv) and m_t, averaged over :data:`underfire.metrics.DEFAULT_KS`.
        distance: the attack's own map distance ℓ_int at the returned x_adv (on the map the
            attack optimized; for MASK its estimate).
    """

    target: torch.Tensor
    prediction: torch.Tensor
    success: torch.Tensor
    confidence: torch.Tensor
    l1: torch.Tensor
    iou: torch.Tensor
    distance: torch.Tensor

    def summary(self) -> dict[str, float | int | None]:
        """Batch means: success rate; target confidence over the successful samples (the
        paper's, None when none succeeded) and over all samples; L1 and IoU over all."""
        return confidence_summary(self.success, self.confidence) | {
            "l1": float(self.l1.float().mean()) if self.success.numel() else 0.0,
            "iou": float(self.iou.float().mean()) if self.success.numel() else 0.0,
        }

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists, for results files."""
        return {k: getattr(self, k).detach().cpu().tolist() for k in self.__dataclass_fields__}
