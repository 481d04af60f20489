"""GRAD: the vanilla gradient saliency map (Simonyan, Vedaldi & Zisserman, ICLR-W 2014).

m = |∂f_c(x)/∂x|, reduced over channels by the maximum (as in ADV²'s GRAD interpreter).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.validation import check_int
from underfire.interpreters.base import (
    INTERPRETERS,
    Interpreter,
    Reduce,
    check_reduce,
    class_scores,
    input_leaf,
    reduce_channels,
    resize_maps,
)

__all__ = ["Saliency", "Score", "input_gradients"]

Score = Literal["logit", "loss"]


def input_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    create_graph: bool = False,
    score: Score = "logit",
) -> torch.Tensor:
    """∂f_c(x)/∂x for each sample's class c = target[i] (logits, not probabilities); with
    ``score="loss"``, ∂CE(f(x), c)/∂x, the gradient of the cross-entropy loss instead.

    Args:
        model: classifier returning logits.
        x: (N, C, H, W) inputs.
        target: (N,) class indices.
        create_graph: keep the result differentiable (for second-order use).
        score: "logit" (f_c) or "loss" (−log softmax_c).

    Returns:
        (N, C, H, W) gradients. Samples do not interact (eval mode), so summing the class
        scores over the batch gives every sample's own gradient in one backward pass.
    """
    x_in = input_leaf(x, create_graph)
    logits = model(x_in)
    scores = (
        class_scores(logits, target)
        if score == "logit"
        else -class_scores(logits.log_softmax(1), target)
    )
    (grad,) = torch.autograd.grad(scores.sum(), x_in, create_graph=create_graph)
    return grad


@INTERPRETERS.register("grad")
class Saliency(Interpreter):
    """GRAD (Simonyan et al. 2014): absolute input gradient of the class logit.

    ``attribute`` returns |∂f_c/∂x| of shape (N, C, H, W) (Captum's ``Saliency`` with
    ``abs=True``; ``absolute=False`` gives the signed gradient); the map reduces channels with
    ``reduce`` ("max" by default, as ADV²'s GRAD).

    Zhang et al.'s code (alps-lab/adv2, ``rev2/gs``) defines GRAD as the gradient of the
    cross-entropy *loss*, max over channels, average-pooled 2×2 on CIFAR-10 (4×4 on ImageNet)
    and min–max normalized: ``Saliency(score="loss", pool=2)``; :meth:`authors` builds it.

    Args:
        reduce: channel reduction of the absolute gradient: "max", "sum" or "mean".
        absolute: take |gradient| in ``attribute`` (the map always uses the absolute value).
        score: differentiate the class "logit" (default, Simonyan et al.) or the
            cross-entropy "loss" (ADV²'s authors).
        pool: average-pool the channel-reduced map by this factor, then repeat each cell
            back to H×W (a map of (H/pool)×(W/pool) cells); 1: no pooling.
    """

    name = "grad"
    _second_order = True

    def __init__(
        self,
        *,
        reduce: Reduce = "max",
        absolute: bool = True,
        score: Score = "logit",
        pool: int = 1,
    ) -> None:
        self.reduce = check_reduce(reduce)
        self.absolute = bool(absolute)
        if score not in ("logit", "loss"):
            raise ValueError(f"score must be 'logit' or 'loss', got {score!r}")
        self.score: Score = score
        self.pool = check_int(pool, "pool", minimum=1)

    @classmethod
    def authors(cls, image_size: int) -> Saliency:
        """GRAD as ADV²'s authors compute it: loss gradient, channel max, pooled 4×4 from
        128 px up (ImageNet), else 2×2 (CIFAR-10; 1 below 16 px)."""
        pool = 4 if image_size >= 128 else 2 if image_size >= 16 else 1
        return cls(score="loss", pool=pool)

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        grad = input_gradients(model, x, target, create_graph=create_graph, score=self.score)
        return grad.abs() if self.absolute else grad

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        reduced = reduce_channels(attr, self.reduce, absolute=True)
        h, w = x.shape[-2:]
        if self.pool > 1:
            if h % self.pool or w % self.pool:
                raise ValueError(
                    f"pool={self.pool} must divide the image size {h}×{w}; choose another pool"
                )
            cells = F.avg_pool2d(reduced, self.pool)
            reduced = cells.repeat_interleave(self.pool, -2).repeat_interleave(self.pool, -1)
        return resize_maps(reduced, (h, w))
