"""Training-mode batch norm with a cheap, exact second derivative.

Double backpropagation (input-gradient regularization, attacks on gradient interpreters)
differentiates a model's backward pass. PyTorch's generic double backward of batch norm
spends some thirty elementwise passes over the activation per layer; on the Ross CNN it is
about half the cost of a gradient-regularized training step on a CPU.

Here the first backward of batch norm is its own autograd function, whose backward is
written in closed form with three fused native batch-norm backward calls (one input
gradient, two per-channel reductions) and three elementwise passes. Forward values and
first derivatives are PyTorch's own kernels; second derivatives are exact (checked with
``torch.autograd.gradgradcheck`` in float64, tests/defenses). Third derivatives are not
supported: differentiating further raises.

Derivation (per channel, M elements, x̂ = (x − μ)·r, r = 1/√(var + eps), γ the weight):
the first backward maps an upstream gradient ``dy`` to::

    dx = γ·r·(dy − mean(dy) − x̂·b),    b = mean(dy·x̂)
    dγ = Σ dy·x̂,                      dβ = Σ dy

For upstream gradients ``G`` (of dx), ``Gγ``, ``Gβ`` of a scalar ``S``, with ``a = mean(dy)``,
``Ḡ = mean(G)``, ``C = Σ G·x̂`` and ``A = Σ G·(dy − a)``::

    ∂S/∂dy = γ·r·(G − Ḡ − x̂·C/M) + Gγ·x̂ + Gβ
    ∂S/∂x  = −γ·r²·[(C/M)(dy − a) + b·(G − Ḡ) + x̂·(A − 3·b·C)/M] + Gγ·r·(dy − a − x̂·b)
    ∂S/∂γ  = r·(A − b·C)

(the ``∂/∂x`` line differentiates through μ and r, which depend on x).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from underfire.core.state import patch_forward

__all__ = ["batch_norm_train", "fast_batch_norm_double_backward"]

_native_backward = torch.ops.aten.native_batch_norm_backward


def _channel_shape(x: torch.Tensor) -> list[int]:
    return [1, -1] + [1] * (x.dim() - 2)


class _BatchNormTrain(torch.autograd.Function):
    """Batch norm with batch statistics; its backward is :class:`_BatchNormBackward`."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        momentum: float,
        eps: float,
    ) -> torch.Tensor:
        # native_batch_norm updates the running statistics in place (unbiased variance),
        # exactly as nn.BatchNorm's forward does.
        out, mean, invstd = torch.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps
        )
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, weight, mean, invstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx, dw, db = _BatchNormBackward.apply(
            dy, x, weight, mean, invstd, ctx.eps, need_w or need_b
        )
        return (
            dx if need_x else None,
            dw if need_w else None,
            db if need_b and ctx.has_bias else None,
            None,
            None,
            None,
            None,
        )


class _BatchNormBackward(torch.autograd.Function):
    """``(dy, x, γ) ↦ (dx, dγ, dβ)`` of training-mode batch norm, with a closed-form backward."""

    @staticmethod
    def forward(
        ctx: Any,
        dy: torch.Tensor,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        mean: torch.Tensor,
        invstd: torch.Tensor,
        eps: float,
        need_affine: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(dy, x, weight, mean, invstd)
        ctx.eps = eps
        dx, dw, db = _native_backward(
            dy, x, weight, None, None, mean, invstd, True, eps, [True, need_affine, need_affine]
        )
        return dx, dw, db

    @staticmethod
    def backward(
        ctx: Any, g_dx: torch.Tensor | None, g_dw: torch.Tensor | None, g_db: torch.Tensor | None
    ) -> tuple[Any, ...]:
        dy, x, weight, mean, invstd = ctx.saved_tensors
        with torch.no_grad():
            grads = _second_derivatives(ctx, dy, x, weight, mean, invstd, g_dx, g_dw, g_db)
        depends_on = [
            t for t in (dy, x, weight, g_dx, g_dw, g_db) if t is not None and t.requires_grad
        ]
        if torch.is_grad_enabled() and depends_on:
            # a third derivative would need terms this closed form does not have: route the
            # results through a node that refuses to be differentiated
            present = [i for i, g in enumerate(grads) if g is not None]
            guarded = _RefuseThirdDerivative.apply(
                len(present), *[grads[i] for i in present], *depends_on
            )
            routed = list(grads)
            for i, g in zip(present, guarded, strict=False):
                routed[i] = g
            return (*routed, None, None, None, None)
        return (*grads, None, None, None, None)


class _RefuseThirdDerivative(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, n: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.view_as(t) for t in tensors[:n])

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError(
            "third derivatives through training-mode batch norm are not supported by underfire's "
            "closed-form double backward; differentiate twice at most, or build the graph without "
            "fast_batch_norm_double_backward (GradientRegularization(..., fast_batch_norm=False))"
        )


def _second_derivatives(
    ctx: Any,
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor | None,
    mean: torch.Tensor,
    invstd: torch.Tensor,
    g_dx: torch.Tensor | None,
    g_dw: torch.Tensor | None,
    g_db: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """∂S/∂dy, ∂S/∂x, ∂S/∂γ from the upstream gradients of (dx, dγ, dβ) (module docstring)."""
    eps = ctx.eps
    shape = _channel_shape(x)
    m = x.numel() / x.shape[1]
    r = invstd
    gamma = weight if weight is not None else torch.ones_like(r)
    # Σ dy·x̂ and Σ dy in one fused pass (the weight and bias gradients of batch norm).
    _, sum_dy_xhat, sum_dy = _native_backward(
        dy, x, None, None, None, mean, invstd, True, eps, [False, True, True]
    )
    a, b = sum_dy / m, sum_dy_xhat / m

    grad_dy = grad_x = grad_w = None
    need_dy, need_x, need_w = ctx.needs_input_grad[:3]
    k_dy = torch.zeros_like(r)  # per-channel coefficients of ∂S/∂x = k_dy·dy + k_g·G + k_x·x + k_0
    k_g = torch.zeros_like(r)
    k_x = torch.zeros_like(r)
    k_0 = torch.zeros_like(r)
    if g_dx is not None:
        # ∂S/∂dy = γ·r·(G − Ḡ − x̂·C/M), and C = Σ G·x̂, ΣG from the same fused call.
        grad_dy, sum_g_xhat, sum_g = _native_backward(
            g_dx, x, weight, None, None, mean, invstd, True, eps, [need_dy, True, True]
        )
        # Σ G·dy: the weight gradient of a batch norm with mean 0 and invstd 1 applied to dy.
        _, sum_g_dy, _ = _native_backward(
            g_dx,
            dy,
            None,
            None,
            None,
            torch.zeros_like(mean),
            torch.ones_like(invstd),
            True,
            eps,
            [False, True, False],
        )
        c = sum_g_xhat
        big_a = sum_g_dy - a * sum_g
        if need_x:
            gr2 = gamma * r * r
            k_dy = k_dy - gr2 * c / m
            k_g = k_g - gr2 * b
            k_x = k_x - gr2 * (big_a - 3.0 * b * c) / m * r  # the x̂ term, as a multiple of x
            k_0 = k_0 + gr2 * (c / m * a + b * sum_g / m + (big_a - 3.0 * b * c) / m * r * mean)
        if need_w and weight is not None:
            grad_w = r * (big_a - b * c)
    if g_dw is not None:
        # dγ = Σ dy·x̂: ∂/∂dy = Gγ·x̂, ∂/∂x = Gγ·r·(dy − a − x̂·b)
        if need_dy:
            term = torch.addcmul((-g_dw * r * mean).reshape(shape), x, (g_dw * r).reshape(shape))
            grad_dy = term if grad_dy is None else grad_dy.add_(term)
        if need_x:
            k_dy = k_dy + g_dw * r
            k_x = k_x - g_dw * r * b * r
            k_0 = k_0 - g_dw * r * a + g_dw * r * b * r * mean
    if g_db is not None and need_dy:
        grad_dy = (
            g_db.reshape(shape).expand_as(dy).clone()
            if grad_dy is None
            else grad_dy.add_(g_db.reshape(shape))
        )
    if need_x and (g_dx is not None or g_dw is not None):
        grad_x = torch.addcmul(k_0.reshape(shape), dy, k_dy.reshape(shape))
        if g_dx is not None:
            grad_x.addcmul_(g_dx, k_g.reshape(shape))
        grad_x.addcmul_(x, k_x.reshape(shape))
    return grad_dy, grad_x, grad_w


def batch_norm_train(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Batch norm over batch statistics (training mode), with the cheap double backward.

    Same values, running-statistics update and first derivatives as
    ``torch.nn.functional.batch_norm(..., training=True)``.
    """
    if x.dim() < 2:
        raise ValueError(
            f"batch norm needs at least 2 dimensions (N, C, ...), got shape {tuple(x.shape)}"
        )
    return _BatchNormTrain.apply(x, weight, bias, running_mean, running_var, momentum, eps)


def _fast_forward(module: nn.modules.batchnorm._BatchNorm) -> Any:
    original = module.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        batch_stats = module.training or (
            module.running_mean is None and module.running_var is None
        )
        if not batch_stats:
            return original(x)  # evaluation mode is affine: its double backward is already cheap
        module._check_input_dim(x)
        factor = 0.0 if module.momentum is None else module.momentum
        if (
            module.training
            and module.track_running_stats
            and module.num_batches_tracked is not None
        ):
            module.num_batches_tracked.add_(1)
            if module.momentum is None:  # cumulative moving average, as nn.BatchNorm does
                factor = 1.0 / float(module.num_batches_tracked)
        update = module.training or not module.track_running_stats
        return batch_norm_train(
            x,
            module.weight,
            module.bias,
            module.running_mean if update else None,
            module.running_var if update else None,
            factor,
            module.eps,
        )

    return forward


@contextmanager
def fast_batch_norm_double_backward(model: Any) -> Iterator[Any]:
    """Route the model's batch-norm layers through :func:`batch_norm_train` inside the block.

    Only layers that normalize with batch statistics change; evaluation-mode layers and
    every other module run as before (a plain callable passes through untouched). The
    originals are restored on exit.

    >>> with fast_batch_norm_double_backward(model):
    ...     g, = torch.autograd.grad(loss_fn(model(x)), x, create_graph=True)
    """
    # Only the stock BatchNorm1d/2d/3d forward is replaced (not SyncBatchNorm or custom ones).
    modules = model.modules() if isinstance(model, nn.Module) else ()
    patched = [
        mod
        for mod in modules
        if isinstance(mod, nn.modules.batchnorm._BatchNorm)
        and type(mod).forward is nn.modules.batchnorm._BatchNorm.forward
        and "forward" not in mod.__dict__
    ]
    with ExitStack() as stack:
        for mod in patched:
            stack.enter_context(patch_forward(mod, _fast_forward(mod)))
        yield model
