"""Integrated gradients (Sundararajan, Taly & Yan, ICML 2017).

IG_i(x) = (x_i − x'_i) · ∫₀¹ ∂f_c(x' + α(x − x'))/∂x_i dα, approximated by a quadrature rule.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from underfire.core.validation import check_float, check_int
from underfire.interpreters.base import (
    INTERPRETERS,
    Interpreter,
    Reduce,
    check_reduce,
    class_scores,
)

__all__ = ["IntegratedGradients", "quadrature"]

Method = Literal[
    "gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"
]


def quadrature(
    method: Method,
    steps: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes α and weights w on [0, 1] such that ∫₀¹ g ≈ Σ w_k g(α_k).

    Same rules as Captum's ``approximation_methods`` (Gauss–Legendre nodes computed in torch by
    the Golub–Welsch eigenvalue method, in float64).

    Returns:
        (alphas, weights), each of shape (steps,).
    """
    check_int(steps, "steps")
    if method == "gausslegendre":
        k = torch.arange(1, steps, dtype=torch.float64)
        beta = k / torch.sqrt(4 * k * k - 1)
        jacobi = torch.diag(beta, 1) + torch.diag(beta, -1)
        nodes, vecs = torch.linalg.eigh(jacobi)
        weights = 2 * vecs[0] ** 2
        alphas, w = 0.5 * (1 + nodes), 0.5 * weights
    elif method.startswith("riemann_"):
        if method == "riemann_trapezoid":
            if steps < 2:
                raise ValueError("riemann_trapezoid needs steps ≥ 2")
            alphas = torch.linspace(0, 1, steps, dtype=torch.float64)
            w = torch.full((steps,), 1 / (steps - 1), dtype=torch.float64)
            w[0] = w[-1] = 0.5 / (steps - 1)
        else:
            w = torch.full((steps,), 1 / steps, dtype=torch.float64)
            offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}.get(method)
            if offset is None:
                raise ValueError(f"unknown method {method!r}")
            alphas = (torch.arange(steps, dtype=torch.float64) + offset) / steps
    else:
        raise ValueError(
            f"method must be gausslegendre or riemann_{{trapezoid,left,right,middle}}, got {method!r}"
        )
    return alphas.to(device=device, dtype=dtype), w.to(device=device, dtype=dtype)


def check_baseline(baseline: object) -> float | torch.Tensor:
    """An IG baseline: a number or a floating tensor, finite and in [0, 1] (inputs live there)."""
    if isinstance(baseline, torch.Tensor):
        if not baseline.is_floating_point():
            raise TypeError(f"baseline must be a floating tensor, got dtype {baseline.dtype}")
        if baseline.dim() > 4:
            raise ValueError(
                f"baseline must broadcast to (N, C, H, W), got shape {tuple(baseline.shape)}"
            )
        b = baseline.detach()
        if b.numel() and not bool(torch.isfinite(b).all()):
            raise ValueError("baseline contains NaN or infinite values")
        if b.numel() and (float(b.min()) < 0 or float(b.max()) > 1):
            raise ValueError(
                f"baseline values must be in [0, 1] like the inputs, got [{float(b.min()):.4g}, "
                f"{float(b.max()):.4g}]"
            )
        return b.clone()
    return check_float(baseline, "baseline", low=0.0, high=1.0)


@INTERPRETERS.register("ig")
class IntegratedGradients(Interpreter):
    """Integrated gradients (Sundararajan et al. 2017) from a constant baseline.

    ``attribute`` returns the signed IG of shape (N, C, H, W) (Captum's
    ``IntegratedGradients.attribute`` with the same baseline, ``n_steps`` and ``method``);
    the map is |IG| reduced over channels.

    Args:
        steps: number of quadrature points along the path.
        baseline: the baseline x': a constant in [0, 1] (0 = black image) or a tensor of
            values in [0, 1] broadcastable to (N, C, H, W), e.g. a (C, H, W) blurred image.
        method: quadrature rule, Captum's names; "gausslegendre" is Captum's default.
        batch_size: path points per forward pass, as a multiple of N images (None: all at once).
        reduce: channel reduction of |IG| for the map.
    """

    name = "ig"
    _second_order = True

    def __init__(
        self,
        *,
        steps: int = 50,
        baseline: float | torch.Tensor = 0.0,
        method: Method = "gausslegendre",
        batch_size: int | None = None,
        reduce: Reduce = "max",
    ) -> None:
        quadrature(method, steps)  # validates
        self.steps = int(steps)
        self.baseline = check_baseline(baseline)
        self.method = method
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        self.reduce = check_reduce(reduce)

    def _baseline_for(self, x: torch.Tensor) -> float | torch.Tensor:
        if not isinstance(self.baseline, torch.Tensor):
            return self.baseline
        b = self.baseline.to(device=x.device, dtype=x.dtype)
        try:
            torch.broadcast_shapes(b.shape, x.shape)
        except RuntimeError as err:
            raise ValueError(
                f"baseline of shape {tuple(b.shape)} does not broadcast to x of shape "
                f"{tuple(x.shape)}; give a (C, H, W), (1, C, H, W) or (N, C, H, W) tensor"
            ) from err
        if torch.broadcast_shapes(b.shape, x.shape) != x.shape:
            raise ValueError(
                f"baseline of shape {tuple(b.shape)} would enlarge x of shape {tuple(x.shape)}"
            )
        return b

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        alphas, weights = quadrature(self.method, self.steps, dtype=x.dtype, device=x.device)
        xs = x if create_graph and x.requires_grad else x.detach()
        base = self._baseline_for(x)
        delta = xs - base
        n = x.shape[0]
        view = (-1, 1, 1, 1, 1)
        # (steps, N, C, H, W) path points, step-major like Captum.
        path = (base + alphas.view(view) * delta.unsqueeze(0)).reshape(-1, *x.shape[1:])
        if not (create_graph and x.requires_grad):
            path = path.detach().requires_grad_(True)
        t = target.repeat(self.steps)
        chunk = self.batch_size or self.steps * n
        chunk = max(1, chunk // n) * n if self.batch_size else chunk
        grads = []
        for i in range(0, path.shape[0], chunk):
            part = path[i : i + chunk]
            scores = class_scores(model(part), t[i : i + chunk])
            grads.append(torch.autograd.grad(scores.sum(), part, create_graph=create_graph)[0])
        grad = (torch.cat(grads) if len(grads) > 1 else grads[0]).view(self.steps, n, *x.shape[1:])
        avg = (weights.view(view) * grad).sum(dim=0)
        return delta * avg
