"""Interpreters: ``interpreter(model, x, target=None) -> map`` of shape (N, 1, H, W) in [0, 1].

>>> from underfire.interpreters import Saliency, GradCAM, create
>>> maps = Saliency()(model, x)                       # predicted class, normalized per sample
>>> raw = GradCAM().attribute(model, x, y)            # native (N, 1, h, w) Grad-CAM
>>> raw = Saliency(model).attribute(x, target=y)      # Captum's style: the model bound
>>> maps = create("ig", steps=32)(model, x)
>>> with smooth_relu(model):                          # second order through ReLU networks
...     m = Saliency()(model, x, create_graph=True)

Names for the CLI: grad, smoothgrad, ig, cam, gradcam, mask, rts, ensemble.
"""

from __future__ import annotations

from typing import Any

from underfire.core.autograd.smooth_relu import SmoothReLU, smooth_relu, smooth_relu_derivative
from underfire.interpreters.base import (
    INTERPRETERS,
    Interpreter,
    normalize_maps,
    reduce_channels,
    resize_maps,
)
from underfire.interpreters.cam import CAM, GradCAM
from underfire.interpreters.ensemble import Ensemble
from underfire.interpreters.grad import Saliency, input_gradients
from underfire.interpreters.integrated_gradients import IntegratedGradients
from underfire.interpreters.mask import Mask, gaussian_blur, total_variation
from underfire.interpreters.rts import RTS, MaskingNetwork, RTSConfig, evaluate_rts, train_rts
from underfire.interpreters.smoothgrad import SmoothGrad

__all__ = [
    "CAM",
    "INTERPRETERS",
    "RTS",
    "Ensemble",
    "GradCAM",
    "IntegratedGradients",
    "Interpreter",
    "Mask",
    "MaskingNetwork",
    "RTSConfig",
    "Saliency",
    "SmoothGrad",
    "SmoothReLU",
    "create",
    "create_interpreter",
    "evaluate_rts",
    "gaussian_blur",
    "input_gradients",
    "interpreter_names",
    "names",
    "normalize_maps",
    "reduce_channels",
    "resize_maps",
    "smooth_relu",
    "smooth_relu_derivative",
    "total_variation",
    "train_rts",
]


def create(name: str, **kwargs: Any) -> Interpreter:
    """Build a registered interpreter by name, e.g. ``create("ig", steps=32)`` (``rts`` needs
    ``checkpoint=`` or ``network=``)."""
    return INTERPRETERS.create(name, **kwargs)


def names() -> list[str]:
    """Names of the registered interpreters."""
    return INTERPRETERS.names()


# the earlier spellings, kept
create_interpreter = create
interpreter_names = names
