"""Second order through ReLU networks: an exact ReLU forward with a smooth backward.

The gradient of a ReLU network is piecewise constant in its input, so the gradient of a
gradient map (GRAD, SmoothGrad, IG, Grad-CAM weights) with respect to the input is zero
almost everywhere. ADV² (Zhang et al., "Interpretable Deep Learning under Fire", USENIX
Security 2020) attacks such maps on a copy of the network whose ReLU backward is replaced by

    h(z) = z / √(z² + τ)          for z ≥ 0
    h(z) = 1 + z / √(z² + τ)      for z < 0,        τ = 1e-4,

(``h`` is the derivative of √(z²+τ) for z ≥ 0 and of z + √(z²+τ) for z < 0), while the
forward stays an exact ReLU, so predictions do not change. This module implements exactly
that formula. Properties worth knowing: h → 1 for z ≫ √τ and h → 0 for z ≪ −√τ (it tends
to the true step derivative away from 0); near 0 it is *not* a smoothed step: h(0) = 0 and
h(0⁻) → 1, i.e. it jumps at 0; on each side it rises monotonically from 0 to 1, crossing
0.5 at z = ±√(τ/3). Its own derivative is h'(z) = τ / (z² + τ)^{3/2} on both sides,
and that is what second-order autograd uses: the backward ``g·h(z)`` is one autograd
function whose own backward is written in closed form (``∂/∂g = G·h``, ``∂/∂z = G·g·h'``),
like core/autograd/batchnorm.py, so double backpropagation through a network adds one node
per ReLU (checked with gradcheck/gradgradcheck in float64, tests/interpreters).

Only :class:`torch.nn.ReLU` *modules* are swapped; functional calls (``F.relu``,
``torch.relu``, ``x.clamp(min=0)``, torchvision DenseNet's final ``F.relu``) are not, and a
warning is raised when a model has no ReLU module at all.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from underfire.core.validation import check_positive

__all__ = [
    "DEFAULT_TAU",
    "SmoothReLU",
    "smooth_relu",
    "smooth_relu_derivative",
    "smooth_relu_function",
]

DEFAULT_TAU = 1e-4


def smooth_relu_derivative(z: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """The surrogate ReLU derivative h(z) of ADV² (REFERENCE.md §3), differentiable in z.

    Args:
        z: pre-activations, any shape.
        tau: smoothing constant τ > 0.

    Returns:
        h(z), same shape as ``z``: z/√(z²+τ) where z ≥ 0, 1 + z/√(z²+τ) where z < 0.
    """
    s = z / torch.sqrt(z * z + tau)
    return torch.where(z >= 0, s, 1.0 + s)


def _h_and_slope(z: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """h(z) and h'(z) = τ / (z² + τ)^{3/2}, from one reciprocal square root (few passes: on a
    CPU these elementwise passes are a large part of a double backward)."""
    r = torch.addcmul(z.new_tensor(tau), z, z).rsqrt_()
    h = (z * r).add_(z.lt(0))  # the bool adds in the kernel, without a float copy of the mask
    slope = r.pow_(3).mul_(tau)
    return h, slope


def _h(z: torch.Tensor, tau: float) -> torch.Tensor:
    """h(z) alone."""
    r = torch.addcmul(z.new_tensor(tau), z, z).rsqrt_()
    return r.mul_(z).add_(z.lt(0))


def _slope(z: torch.Tensor, tau: float) -> torch.Tensor:
    """h'(z) = τ / (z² + τ)^{3/2} alone."""
    return torch.addcmul(z.new_tensor(tau), z, z).rsqrt_().pow_(3).mul_(tau)


class _SmoothReLUFunction(torch.autograd.Function):
    """Exact ReLU forward; its backward ``(g, z) ↦ g·h(z)`` is :class:`_SmoothReLUBackward`.

    Writing the backward as one function with a closed-form backward of its own keeps a
    double-backward graph to a single node per ReLU: differentiating PyTorch ops written out
    in the backward (√, ÷, where, ...) records half a dozen nodes per ReLU, each saving a
    full activation, and made an ADV²-GRAD step several times dearer than needed.

    h(z) depends on z alone, so it is computed once per forward and kept on the node: an
    ADV² step runs this backward twice (the gradient map with ``create_graph``, then the
    loss gradient, which passes through the forward graph again without a graph of its own),
    and the second run is then one multiplication instead of a dozen elementwise passes.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, tau: float) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.tau = tau
        ctx.h = None  # h(z), filled by the first backward that computes it
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (z,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _SmoothReLUBackward.apply(grad_output, z, ctx.tau, ctx), None
        if ctx.h is None:
            ctx.h = _h(z, ctx.tau)
        return grad_output * ctx.h, None


class _SmoothReLUBackward(torch.autograd.Function):
    """``(g, z) ↦ g·h(z)``; backward: ∂/∂g = G·h(z), ∂/∂z = G·g·h'(z).

    h and g·h' are computed once, in the forward, and saved: the double backward is then two
    multiplications. When that backward is itself being differentiated (a third derivative),
    it is rebuilt from z with differentiable ops, so every order stays exact.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, g: torch.Tensor, z: torch.Tensor, tau: float, owner: Any
    ) -> torch.Tensor:
        h = owner.h
        if h is None:
            h, slope = _h_and_slope(z, tau)
            owner.h = h
        else:
            slope = _slope(z, tau)
        g_slope = slope.mul_(g)  # only G·g·h'(z) is ever needed
        ctx.save_for_backward(g, z, h, g_slope)
        ctx.tau = tau
        return g * h

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        g, z, h, g_slope = ctx.saved_tensors
        need_g, need_z = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled() and (z.requires_grad or g.requires_grad or grad.requires_grad):
            h = smooth_relu_derivative(z, ctx.tau)
            g_slope = g * (ctx.tau * (z * z + ctx.tau).pow(-1.5))
        return (grad * h if need_g else None, grad * g_slope if need_z else None, None, None)


def smooth_relu_function(z: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Exact ReLU forward, backward ``grad · h(z)`` (twice differentiable)."""
    return _SmoothReLUFunction.apply(z, tau)


class SmoothReLU(nn.Module):
    """Drop-in for :class:`torch.nn.ReLU`: exact forward, smooth backward (see module doc)."""

    def __init__(self, tau: float = DEFAULT_TAU) -> None:
        super().__init__()
        self.tau = check_positive(tau, "tau")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return smooth_relu_function(z, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


@contextmanager
def smooth_relu(model: nn.Module, tau: float = DEFAULT_TAU) -> Iterator[nn.Module]:
    """Swap every ``nn.ReLU`` module of ``model`` for :class:`SmoothReLU` inside the block.

    The originals are put back on exit, also when the block raises. A module reused in
    several places (torchvision's ResNet blocks) is swapped everywhere it is registered.

    >>> with smooth_relu(model):
    ...     m = Saliency()(model, x, create_graph=True)
    ...     (m * target_map).sum().backward()   # non-zero input gradient

    Args:
        model: the network, modified in place for the duration of the block.
        tau: smoothing constant τ (ADV² uses 1e-4).

    Yields:
        The same ``model``.
    """
    tau = check_positive(tau, "tau")
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    replacement: dict[int, SmoothReLU] = {}
    for parent in model.modules():
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.ReLU) and not isinstance(child, SmoothReLU):
                new = replacement.setdefault(id(child), SmoothReLU(tau))
                swapped.append((parent, name, child))
                parent._modules[name] = new
    if not swapped:
        warnings.warn(
            f"{type(model).__name__} has no nn.ReLU module to smooth; functional relu calls are not "
            "swapped, so second derivatives through them stay zero",
            stacklevel=3,
        )
    try:
        yield model
    finally:
        for parent, name, child in reversed(swapped):
            parent._modules[name] = child
