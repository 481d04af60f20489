"""GRAD: the vanilla gradient saliency map (Simonyan, Vedaldi & Zisserman, ICLR-W 2014).

m = |∂f_c(x)/∂x|, reduced over channels by the maximum (as in ADV²'s GRAD interpreter).
"""

from __future__ import annotations

import torch
from torch import nn

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

__all__ = ["Saliency", "input_gradients"]


def input_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """∂f_c(x)/∂x for each sample's class c = target[i] (logits, not probabilities).

    Args:
        model: classifier returning logits.
        x: (N, C, H, W) inputs.
        target: (N,) class indices.
        create_graph: keep the result differentiable (for second-order use).

    Returns:
        (N, C, H, W) gradients. Samples do not interact (eval mode), so summing the class
        scores over the batch gives every sample's own gradient in one backward pass.
    """
    x_in = input_leaf(x, create_graph)
    scores = class_scores(model(x_in), target)
    (grad,) = torch.autograd.grad(scores.sum(), x_in, create_graph=create_graph)
    return grad


@INTERPRETERS.register("grad")
class Saliency(Interpreter):
    """GRAD (Simonyan et al. 2014): absolute input gradient of the class logit.

    ``attribute`` returns |∂f_c/∂x| of shape (N, C, H, W) (Captum's ``Saliency`` with
    ``abs=True``; ``absolute=False`` gives the signed gradient); the map reduces channels with
    ``reduce`` ("max" by default, as ADV²'s GRAD).

    Args:
        reduce: channel reduction of the absolute gradient: "max", "sum" or "mean".
        absolute: take |gradient| in ``attribute`` (the map always uses the absolute value).
    """

    name = "grad"
    _second_order = True

    def __init__(self, *, reduce: Reduce = "max", absolute: bool = True) -> None:
        self.reduce = check_reduce(reduce)
        self.absolute = bool(absolute)

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        grad = input_gradients(model, x, target, create_graph=create_graph)
        return grad.abs() if self.absolute else grad

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return resize_maps(reduce_channels(attr, self.reduce, absolute=True), tuple(x.shape[-2:]))
