"""The per-sample record of one ADV² call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ADV2Result"]


@dataclass
class ADV2Result:
    """Per-sample outcome of one ADV² call (all tensors (N,), on the input's device).

    Attributes:
        target: the target classes t.
        prediction: f(x_adv).
        success: f(x_adv) = t (the paper's attack success).
        confidence: softmax probability of t at x_adv.
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

    def summary(self) -> dict[str, float]:
        """Batch means: success rate, and confidence/L1/IoU over all samples."""
        n = max(1, int(self.success.numel()))
        return {
            "n": int(self.success.numel()),
            "success_rate": float(self.success.float().sum()) / n,
            "confidence": float(self.confidence.float().mean()) if self.success.numel() else 0.0,
            "l1": float(self.l1.float().mean()) if self.success.numel() else 0.0,
            "iou": float(self.iou.float().mean()) if self.success.numel() else 0.0,
        }

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists, for results files."""
        return {k: getattr(self, k).detach().cpu().tolist() for k in self.__dataclass_fields__}
