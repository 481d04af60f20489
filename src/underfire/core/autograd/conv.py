"""Convolutions with a double backward that skips the weight gradient of frozen layers.

Differentiating an input gradient (ADV² against gradient maps, Zhang et al., USENIX Security
2020) differentiates each convolution's backward ``gI = Jᵀ·gO`` (J the convolution, linear in
its input). Its derivative for an upstream gradient ``G`` of ``gI`` is ``∂S/∂gO = J·G``, one
forward convolution of ``G``; ``gI`` does not depend on the layer's input. PyTorch's generic
double backward (``_convolution_double_backward``, torch 2.x on the CPU) also computes the
*weight* term ``conv(G, gO)`` even when the weight does not require a gradient, then throws it
away: measured on a ResNet-50 at batch 2 (CPU, one thread), those transposed convolutions and
their layout copies were about 400 ms of a 1.4 s ADV²-GRAD step.

Inside :func:`fast_conv_double_backward`, every ``nn.Conv1d/2d/3d`` whose parameters are all
frozen runs as one autograd function whose backward is another (the design of
core/autograd/smooth_relu.py):

* forward: ``F.conv{1,2,3}d`` (PyTorch's kernel, same values);
* backward: ``gI`` from ``aten.convolution_backward`` with only the input gradient requested
  (the very call PyTorch's own backward makes for a frozen layer, same values);
* backward of the backward: ``∂S/∂gO = conv(G, W)`` with the same stride, padding, dilation
  and groups; nothing w.r.t. the layer's input (``gI`` does not depend on it).

Every order stays exact: the last line is a differentiable ``F.conv*d`` (checked with
gradcheck/gradgradcheck in float64, tests/core/test_conv_double_backward.py). Layers with a
parameter that requires a gradient (training, gradient regularization) and layers with a
string padding ("same", "valid") or a non-standard forward run untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.state import patch_forward

__all__ = ["fast_conv_double_backward"]

_CONV_FN: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_native_backward = torch.ops.aten.convolution_backward
_STOCK_FORWARDS = (nn.Conv1d.forward, nn.Conv2d.forward, nn.Conv3d.forward)


class _FrozenConv(torch.autograd.Function):
    """``x ↦ conv(x, W) + b`` with W, b constants; backward :class:`_FrozenConvInputGrad`."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        return _CONV_FN[weight.dim() - 2](x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        grad_in = None
        if ctx.needs_input_grad[0]:
            grad_in = _FrozenConvInputGrad.apply(grad_out, x, weight, *ctx.conf)
        return grad_in, None, None, None, None, None, None


class _FrozenConvInputGrad(torch.autograd.Function):
    """``gO ↦ Jᵀ·gO`` (the input gradient of a convolution); backward ``G ↦ J·G``."""

    @staticmethod
    def forward(
        ctx: Any,
        grad_out: torch.Tensor,
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        dilation: tuple[int, ...],
        groups: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(weight)
        ctx.conf = (stride, padding, dilation, groups)
        zeros = [0] * len(stride)
        grad_in, _, _ = _native_backward(
            grad_out,
            x,
            weight,
            None,
            list(stride),
            list(padding),
            list(dilation),
            False,
            zeros,
            groups,
            [True, False, False],
        )
        return grad_in

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (weight,) = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        g_out = None
        if ctx.needs_input_grad[0]:
            # J·G: differentiable in G (and W), so higher orders stay exact
            g_out = _CONV_FN[weight.dim() - 2](
                grad, weight, None, stride, padding, dilation, groups
            )
        # Jᵀ·gO does not depend on the layer's input x; W is frozen
        return g_out, None, None, None, None, None, None


def _patchable(mod: nn.Module) -> bool:
    # only the stock forward (subclasses that keep it, e.g. torchvision's, included)
    return (
        isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and type(mod).forward in _STOCK_FORWARDS
        and "forward" not in mod.__dict__
        and not isinstance(mod.padding, str)
    )


def _fast_forward(mod: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> Callable[[torch.Tensor], Any]:
    original: Callable[..., torch.Tensor] = type(mod).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        weight, bias = mod.weight, mod.bias
        frozen = not weight.requires_grad and (bias is None or not bias.requires_grad)
        if not frozen or not torch.is_grad_enabled() or not x.requires_grad:
            return original(mod, x)
        padding = tuple(int(p) for p in mod.padding)
        if mod.padding_mode != "zeros":  # padded explicitly, as nn.Conv*d does
            x = F.pad(x, mod._reversed_padding_repeated_twice, mode=mod.padding_mode)
            padding = (0,) * len(padding)
        return _FrozenConv.apply(
            x,
            weight,
            bias,
            tuple(mod.stride),
            padding,
            tuple(mod.dilation),
            mod.groups,
        )

    return forward


@contextmanager
def fast_conv_double_backward(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, frozen ``nn.Conv1d/2d/3d`` layers of ``model`` skip the weight term
    of their double backward (module docstring); values and gradients are unchanged.

    The check "all parameters frozen" is made at every call, so a layer whose weight requires
    a gradient runs PyTorch's own convolution. The originals are restored on exit, also when
    the block raises.

    >>> with model_state(model), fast_conv_double_backward(model):
    ...     g, = torch.autograd.grad(score(model(x)), x, create_graph=True)
    ...     (g * g).sum().backward()
    """
    patched = [
        mod
        for mod in model.modules()
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and _patchable(mod)
    ]
    with ExitStack() as stack:
        for mod in patched:
            stack.enter_context(patch_forward(mod, _fast_forward(mod)))
        yield model
