"""ADV²'s objective and the model patches it differentiates under.

ℓ_prd is a cross-entropy to a label-smoothed target (:func:`smoothed_cross_entropy`), ℓ_int a
squared distance of normalized maps (:func:`map_distance`); :func:`joint_loss_gradient` takes
one step's gradient of ℓ_prd + λ·ℓ_int through the interpreter's differentiable map
(:meth:`~underfire.interpreters.Interpreter.differentiable_map`, the same for every
interpreter), inside :func:`attack_patches`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.adv2.presets import Distance
from underfire.core.autograd.conv import fast_conv_double_backward
from underfire.core.autograd.smooth_relu import DEFAULT_TAU, smooth_relu
from underfire.core.state import patch_forward
from underfire.interpreters.base import Interpreter, MapState
from underfire.interpreters.mask import MaskWarning

__all__ = [
    "affine_batch_norm",
    "attack_patches",
    "joint_loss_gradient",
    "judge_map",
    "map_distance",
    "smoothed_cross_entropy",
]


def map_distance(
    maps: torch.Tensor, target_maps: torch.Tensor, distance: Distance = "sse", pool: int = 1
) -> torch.Tensor:
    """ℓ_int per sample: squared distance of (N, 1, H, W) maps, after ``pool``×``pool`` average
    pooling, summed ("sse") or averaged ("mse") over pixels. Differentiable."""
    if pool > 1:
        maps = F.avg_pool2d(maps, pool, ceil_mode=True)
        target_maps = F.avg_pool2d(target_maps, pool, ceil_mode=True)
    sq = (maps - target_maps).pow(2).flatten(1)
    return sq.sum(1) if distance == "sse" else sq.mean(1)


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, mass: float | torch.Tensor = 0.95
) -> torch.Tensor:
    """Cross-entropy (N,) to a soft label with ``mass`` on the target, the rest spread evenly
    over the other classes (ADV²'s label smoothing; ``mass=1`` is the plain cross-entropy).
    ``mass`` may be an (N,) tensor: one soft label per sample (the authors' random one)."""
    logp = F.log_softmax(logits, dim=1)
    k = logits.shape[1]
    if isinstance(mass, torch.Tensor):
        m = mass.to(logp.dtype).reshape(-1, 1)
        soft = ((1.0 - m) / max(1, k - 1)).expand_as(logp).clone()
        soft.scatter_(1, target[:, None], m)
        return -(soft * logp).sum(1)
    if mass >= 1.0:
        return -logp.gather(1, target[:, None]).squeeze(1)
    soft = torch.full_like(logp, (1.0 - mass) / max(1, k - 1))
    soft.scatter_(1, target[:, None], mass)
    return -(soft * logp).sum(1)


@contextlib.contextmanager
def affine_batch_norm(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, evaluation-mode batch norm runs as one fused ``x·s + b`` per channel.

    Same function (s = γ/√(var + ε), b = β − μ·s, up to float rounding); its backward is a
    multiplication whose own backward is another, where PyTorch's generic double backward of
    ``native_batch_norm`` spends a dozen passes per layer (an eighth of an ADV²-GRAD step on
    the Ross CNN). Training-mode layers are left alone.
    """
    patched = [
        mod
        for mod in model.modules()
        if isinstance(mod, nn.modules.batchnorm._BatchNorm)
        and not mod.training
        and mod.running_mean is not None
        and mod.running_var is not None
        and type(mod).forward is nn.modules.batchnorm._BatchNorm.forward
        and "forward" not in mod.__dict__
    ]

    def affine(mod: nn.modules.batchnorm._BatchNorm) -> Any:
        def forward(x: torch.Tensor) -> torch.Tensor:
            assert mod.running_var is not None and mod.running_mean is not None
            scale = torch.rsqrt(mod.running_var + mod.eps)
            if mod.weight is not None:
                scale = scale * mod.weight
            shift = -mod.running_mean * scale
            if mod.bias is not None:
                shift = shift + mod.bias
            shape = [1, -1] + [1] * (x.dim() - 2)
            return torch.addcmul(shift.view(shape), x, scale.view(shape))

        return forward

    with contextlib.ExitStack() as stack:
        for mod in patched:
            stack.enter_context(patch_forward(mod, affine(mod)))
        yield model


@contextlib.contextmanager
def attack_patches(model: nn.Module, smooth: bool, tau: float = DEFAULT_TAU) -> Iterator[nn.Module]:
    """The model as ADV² differentiates it, inside the block (all restored on exit):

    * ``smooth``: ReLU modules with the smooth backward (:func:`smooth_relu`), for maps that
      are gradients;
    * evaluation-mode batch norm as one fused affine op (:func:`affine_batch_norm`);
    * frozen convolutions whose double backward skips the unused weight term
      (:func:`~underfire.core.autograd.fast_conv_double_backward`).

    Only the smooth ReLU changes a derivative (the point of it); the other two give the same
    values and gradients, faster.
    """
    with contextlib.ExitStack() as stack:
        if smooth:
            stack.enter_context(smooth_relu(model, tau))
        stack.enter_context(affine_batch_norm(model))
        stack.enter_context(fast_conv_double_backward(model))
        yield model


def judge_map(
    interpreter: Interpreter, model: nn.Module, x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The map a user would see: the true model (no smoothing), no graph, MASK run in full.
    Its warnings about single maps are for users of the interpreter, not for the search."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskWarning)
        return interpreter(model, x, t)


def joint_loss_gradient(
    model: nn.Module,
    interpreter: Interpreter,
    x: torch.Tensor,
    target: torch.Tensor,
    target_map: torch.Tensor,
    lam: float,
    *,
    label_smoothing: float | torch.Tensor = 0.95,
    distance: Distance = "sse",
    pool: int = 1,
    encoder: nn.Module | None = None,
    encoder_weight: float = 1.0,
    state: MapState | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient w.r.t. ``x`` of Σ_i ℓ_prd(f(x_i), t_i) + λ·ℓ_int(g(x_i), m_t,i) (one ADV² step).

    The caller provides the smooth-ReLU context for second-order interpreters (and the other
    :func:`attack_patches`, which only make it faster) and the model state (eval, frozen
    parameters). The logits are taken from the interpreter's own forward
    pass on ``x`` when it makes one (GRAD, CAM, Grad-CAM, RTS), saving a forward.

    Returns:
        (gradient (N, C, H, W), logits (N, K) detached, maps (N, 1, H, W) detached,
        ℓ_int (N,) detached).
    """
    state = state if state is not None else MapState()
    xg = x.detach().requires_grad_(True)
    seen: list[torch.Tensor] = []

    def keep_logits(_m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        if inputs and inputs[0] is xg and isinstance(out, torch.Tensor) and out.requires_grad:
            seen.append(out)

    handle = model.register_forward_hook(keep_logits)
    try:
        maps = interpreter.differentiable_map(model, xg, target, state=state)
    finally:
        handle.remove()
    if not maps.requires_grad:
        raise ValueError(
            f"ADV²: the {type(interpreter).__name__} interpreter returned a map with no autograd graph "
            "to the input, so the map term cannot be optimized; use an interpreter that supports "
            "create_graph=True (grad, smoothgrad, ig, cam, gradcam, mask, rts, ensemble)"
        )
    logits = seen[-1] if seen else model(xg)
    dist = map_distance(maps, target_map, distance, pool)
    loss = smoothed_cross_entropy(logits, target, label_smoothing) + lam * dist
    if encoder is not None:
        loss = loss + encoder_weight * F.cross_entropy(encoder(xg), target, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), xg)
    return grad, logits.detach(), maps.detach(), dist.detach()
