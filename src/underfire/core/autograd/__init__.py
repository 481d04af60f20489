"""Autograd patches: smooth ReLU backward, batch-norm and convolution double backward, layer
capture."""

from __future__ import annotations

from underfire.core.autograd.batchnorm import batch_norm_train, fast_batch_norm_double_backward
from underfire.core.autograd.capture import capture_layer, capture_layers, replace_output
from underfire.core.autograd.conv import fast_conv_double_backward
from underfire.core.autograd.smooth_relu import (
    DEFAULT_TAU,
    SmoothReLU,
    smooth_relu,
    smooth_relu_derivative,
    smooth_relu_function,
)

__all__ = [
    "DEFAULT_TAU",
    "SmoothReLU",
    "batch_norm_train",
    "capture_layer",
    "capture_layers",
    "fast_batch_norm_double_backward",
    "fast_conv_double_backward",
    "replace_output",
    "smooth_relu",
    "smooth_relu_derivative",
    "smooth_relu_function",
]
