"""Input checks shared by every public entry point: clear messages, raised early.

Every float hyperparameter goes through :func:`check_float` (finite, in range), every count
through :func:`check_int`, every batch of images through :func:`check_images`, labels and
targets through :func:`check_labels`, and a model's output through :func:`check_logits`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

__all__ = [
    "check_eps",
    "check_float",
    "check_images",
    "check_int",
    "check_labels",
    "check_logits",
    "check_positive",
    "check_same_device",
    "check_seed",
    "resolve_device",
]

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_images(x: object, name: str = "x", *, range_tol: float = 1e-6) -> torch.Tensor:
    """Check a batch of images: a floating tensor of shape (N, C, H, W) with values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}"
        )
    if x.dim() != 4:
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else ""
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with x.float() / 255"
        )
    if x.numel() > 0:
        lo, hi = torch.aminmax(x.detach())
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if lo < -range_tol or hi > 1 + range_tol:
            raise ValueError(
                f"{name} must have values in [0, 1], got [{lo.item():.4g}, {hi.item():.4g}]; "
                "underfire models normalize inside, so pass unnormalized images scaled to [0, 1]"
            )
    return x


def check_labels(
    y: object, n: int, name: str = "y", num_classes: int | None = None
) -> torch.Tensor:
    """Check integer class labels of shape (N,)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the batch, got {tuple(y.shape)}")
    if y.dtype not in _INT_DTYPES:
        raise TypeError(
            f"{name} must hold integer class indices, got dtype {y.dtype}; use y.long()"
        )
    if num_classes is not None and y.numel() > 0:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} must be in [0, {num_classes - 1}], got values in [{lo}, {hi}]"
            )
    return y


def check_same_device(model: nn.Module, *tensors: torch.Tensor) -> None:
    """Raise if the tensors live on another device than the model's parameters, or if a
    floating tensor's dtype differs from theirs (float64 images into a float32 model)."""
    param = next(model.parameters(), None)
    if param is None:
        return
    for t in tensors:
        if t.device != param.device:
            raise ValueError(
                f"input is on {t.device} but the model is on {param.device}; "
                f"move one of them, e.g. x.to({str(param.device)!r})"
            )
        if t.is_floating_point() and param.is_floating_point() and t.dtype != param.dtype:
            raise TypeError(
                f"input has dtype {t.dtype} but the model's parameters are {param.dtype}; "
                f"convert one of them, e.g. x.to({param.dtype}) or model.to({t.dtype})"
            )


def check_float(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """A finite real number in [low, high] (bounds optional; exclusive on request)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if low is not None and (v < low or (v == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'≥' if low_inclusive else '>'} {low:g}, got {v:g}")
    if high is not None and (v > high or (v == high and not high_inclusive)):
        raise ValueError(f"{name} must be {'≤' if high_inclusive else '<'} {high:g}, got {v:g}")
    return v


def check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (or ≥ 0 with ``allow_zero``)."""
    return check_float(value, name, low=0.0, low_inclusive=allow_zero)


def check_eps(eps: object, norm: str = "linf", name: str = "eps") -> float:
    """An attack radius: finite, ≥ 0; an L∞ radius above 1 covers all of [0, 1] and is refused."""
    v = check_float(eps, name, low=0.0)
    if norm == "linf" and v > 1:
        raise ValueError(
            f"{name}={v:g} exceeds 1: inputs live in [0, 1], so an L∞ ball this large allows any "
            "image; give ε on the [0, 1] scale (e.g. 8/255 ≈ 0.031, not 8)"
        )
    return v


def check_int(value: object, name: str, *, minimum: int = 1) -> int:
    """An int ≥ ``minimum`` (bools are refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
    return value


def check_seed(seed: object) -> int | None:
    """None or an int ≥ 0."""
    if seed is None:
        return None
    return check_int(seed, "seed", minimum=0)


def check_logits(logits: object, n: int, name: str = "model output") -> torch.Tensor:
    """A model's output: (N, K) floating logits with K ≥ 1 and finite values.

    Rows that are non-negative and sum to 1 look like probabilities (a softmax inside the
    model); attacks and interpreters then see saturated, vanishing gradients, so this warns.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of logits (N, K), got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n}, num_classes), got {tuple(logits.shape)}; "
            "the model should return one row of class logits per image"
        )
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be floating logits, got dtype {logits.dtype}")
    if logits.numel() == 0:
        return logits
    detached = logits.detach()
    if not bool(torch.isfinite(detached).all()):
        raise ValueError(f"{name} contains NaN or infinite values; check the model and its weights")
    if logits.shape[1] > 1 and bool((detached >= 0).all()):
        sums = detached.double().sum(1)
        if bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)):
            warnings.warn(
                f"{name} rows are non-negative and sum to 1: the model seems to return "
                "probabilities; underfire expects logits (remove the final softmax), otherwise "
                "gradients saturate and attacks and maps are unreliable",
                UserWarning,
                stacklevel=3,
            )
    return logits


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU raises with a fix."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was asked for but no CUDA GPU is available; use --device cpu"
        )
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda") from err
