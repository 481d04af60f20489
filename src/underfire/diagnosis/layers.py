"""Layers of interest per model, resolved by name, and feature capture for the diagnosis.

Names are those of ``model.named_modules()`` (:func:`underfire.models.get_layer`). Every
layer must output one tensor and run exactly once per forward pass: a module reused at
several places (torchvision's ResNet applies one ``relu`` module many times) has no single
activation to measure or patch, and is refused with a message.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from underfire.core.autograd import capture_layers
from underfire.models import get_layer

__all__ = ["DEFAULT_LAYERS", "capture_features", "default_layers", "resolve_layers"]

_DENSENET169 = [
    "net.features.pool0",
    "net.features.denseblock1",
    "net.features.transition1",
    "net.features.denseblock2",
    "net.features.transition2",
    "net.features.denseblock3",
    "net.features.transition3",
    "net.features.denseblock4",
    "net.features.norm5",
]

#: Registry name → the layers :func:`layer_vulnerability` diagnoses by default: the outputs
#: of the successive stages, input side first. For ``ross-cnn`` (max or average pooling)
#: these are the two conv blocks, both poolings and the hidden fully connected layer
#: (after its ReLU), so the pooling layers can be compared directly.
DEFAULT_LAYERS: dict[str, list[str]] = {
    "ross-cnn": [
        "net.features.block1",
        "net.features.pool1",
        "net.features.block2",
        "net.features.pool2",
        "net.classifier.3",
    ],
    "resnet-small": ["net.stem", "net.stage1", "net.stage2", "net.stage3"],
    "densenet-small": [
        "net.stem",
        "net.block1",
        "net.transition1",
        "net.block2",
        "net.transition2",
        "net.block3",
        "net.final",
    ],
    "resnet50": ["net.maxpool", "net.layer1", "net.layer2", "net.layer3", "net.layer4"],
    "densenet169": _DENSENET169,
}


def default_layers(model: nn.Module) -> list[str]:
    """The default layers of interest of ``model`` (see :data:`DEFAULT_LAYERS`).

    Models not built by :func:`underfire.models.create_model` fall back to the children of
    ``model.net`` (or of the model) that hold parameters, in registration order.
    """
    name = (getattr(model, "config", None) or {}).get("name")
    if name in DEFAULT_LAYERS:
        return list(DEFAULT_LAYERS[name])
    net = getattr(model, "net", None)
    root, prefix = (net, "net.") if isinstance(net, nn.Module) else (model, "")
    layers = [
        prefix + child
        for child, module in root.named_children()
        if any(True for _ in module.parameters())
    ]
    if not layers:
        raise ValueError(
            f"cannot choose default layers for {type(model).__name__}; pass layers=[...] "
            "with names from model.named_modules()"
        )
    return layers


def resolve_layers(
    model: nn.Module, layers: Sequence[str | nn.Module] | str | None
) -> dict[str, nn.Module]:
    """Name → module for ``layers`` (default: :func:`default_layers`), in the given order.
    A layer may be given by name or as a module of ``model`` (it is then keyed by its name).

    Raises:
        KeyError: a name or module that is not a submodule (the message lists some that are).
        ValueError: an empty list or a repeated name.
    """
    from underfire.models import layer_name

    if layers is None:
        names = default_layers(model)
    elif isinstance(layers, str):
        names = [n.strip() for n in layers.split(",") if n.strip()]
    else:
        names = [layer_name(model, n) for n in layers]
    if not names:
        raise ValueError("layers must name at least one layer")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"layers must be distinct, {repeated} is given more than once")
    return {n: get_layer(model, n) for n in names}


@torch.no_grad()
def capture_features(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    batch_size: int = 256,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each layer's output and the logits of ``model`` on ``x``, computed in chunks.

    Returns:
        ``({name: (N, ...) features}, (N, K) logits)``, detached, on ``x``'s device.
    """
    feats: dict[str, list[torch.Tensor]] = {n: [] for n in modules}
    logits: list[torch.Tensor] = []
    for start in range(0, x.shape[0], batch_size):
        with capture_layers(modules) as outs:
            logits.append(model(x[start : start + batch_size]))
        for name, got in outs.items():
            _check_once(name, len(got))
            feats[name].append(got[0])
    return {n: torch.cat(v) for n, v in feats.items()}, torch.cat(logits)


def _check_once(name: str, calls: int) -> None:
    if calls != 1:
        why = "never runs" if calls == 0 else f"runs {calls} times"
        raise ValueError(
            f"layer {name!r} {why} in one forward pass; choose a module that is applied "
            "exactly once (e.g. a block or stage output rather than a shared activation)"
        )
