"""Input checks shared by every public entry point: clear messages, raised early."""

from __future__ import annotations

import torch
from torch import nn


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
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
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
    """Raise if the tensors and the model's parameters live on different devices."""
    param = next(model.parameters(), None)
    if param is None:
        return
    for t in tensors:
        if t.device != param.device:
            raise ValueError(
                f"input is on {t.device} but the model is on {param.device}; "
                f"move one of them, e.g. x.to({str(param.device)!r})"
            )


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return float(value)


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
