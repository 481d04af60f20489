"""The model contract: inputs in [0, 1], normalization inside, logits out, layers by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from underfire.core.registry import Registry

#: Every model registers where it is defined: ``@MODELS.register("ross-cnn")`` on its class
#: or factory. Build models with :func:`underfire.models.create_model`, which records the
#: name and arguments in ``model.config`` for checkpoints.
MODELS: Registry[ImageClassifier] = Registry("model")


class Normalize(nn.Module):
    """(x − mean) / std per channel, as a layer so every model takes [0, 1] inputs."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(
                f"mean and std need one value per channel, got {len(mean)} and {len(std)}"
            )
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class ImageClassifier(nn.Module):
    """Base of every underfire model: ``forward(x in [0,1]) = net(normalize(x))`` → logits.

    Attributes:
        input_shape: (C, H, W) the model expects.
        num_classes: number of logits.
        target_layer: name of the last convolutional block (for CAM / Grad-CAM / diagnosis).
        config: the registry name and keyword arguments that rebuild this model.
    """

    target_layer: str = ""
    #: Whether the network needs exactly ``input_shape`` (a flatten → linear head) or takes
    #: any height and width (global pooling, e.g. the torchvision models).
    fixed_input_size: bool = True

    def __init__(
        self,
        normalize: Normalize,
        net: nn.Module,
        input_shape: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.config: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Checked here, with the expected shape in the message, rather than left to a matrix
        # product deep inside the network that fails with sizes the user never chose.
        expected = self.input_shape if self.fixed_input_size else self.input_shape[:1]
        if x.dim() != 4 or tuple(x.shape[1 : 1 + len(expected)]) != tuple(expected):
            raise ValueError(
                f"{type(self).__name__} expects input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
                + ("" if self.fixed_input_size else " (any height and width)")
            )
        return self.net(self.normalize(x))

    def layer_names(self) -> list[str]:
        """Names of the modules that make up the network, usable with :func:`get_layer`."""
        return [name for name, _ in self.named_modules() if name]


def get_layer(model: nn.Module, name: str | nn.Module) -> nn.Module:
    """The submodule called ``name`` (as in ``model.named_modules()``), with a helpful error.

    A module object is accepted too (as Captum's ``LayerGradCam(model, layer)`` takes it) and
    returned once it is checked to be part of ``model``."""
    if isinstance(name, nn.Module):
        layer_name(model, name)
        return name
    modules = dict(model.named_modules())
    if name not in modules or not name:
        candidates = [n for n in modules if n and n.count(".") <= 2]
        raise KeyError(
            f"model has no layer {name!r}; some layers it has: {', '.join(candidates[:40])}"
        )
    return modules[name]


def layer_name(model: nn.Module, layer: str | nn.Module) -> str:
    """The name under which ``layer`` (a module object or a name) sits in ``model``.

    Raises:
        KeyError: ``layer`` is not one of ``model``'s submodules.
    """
    if isinstance(layer, str):
        get_layer(model, layer)
        return layer
    for name, module in model.named_modules():
        if module is layer and name:
            return name
    raise KeyError(
        f"the layer {type(layer).__name__} passed is not a submodule of {type(model).__name__} "
        "(a module of another copy of the model?); pass a module of this model or its name "
        "(see model.named_modules())"
    )


def default_normalization(
    channels: int, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Normalize:
    mean = list(mean) if mean else [0.5] * channels
    std = list(std) if std else [0.5] * channels
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    return Normalize(mean, std)
