"""Layer capture: record (or replace) a submodule's output during a forward pass.

Used by CAM/Grad-CAM (the target layer's feature map), by the layer diagnosis (features at
every layer of interest, activation patching) and by InterpretGAN. Hooks are always
removed on exit, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture_layer", "capture_layers", "replace_output"]


@contextmanager
def capture_layers(
    layers: dict[str, nn.Module], check: Callable[[str, torch.Tensor], None] | None = None
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record each named layer's output on every forward pass inside the block.

    Args:
        layers: name → module.
        check: called as ``check(name, output)`` during the forward; raise to refuse an output.

    Yields:
        ``{name: [output of pass 1, pass 2, ...]}``, filled as forwards run. Outputs keep
        their autograd graph (detach them yourself when you only need values).
    """
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = []
    try:
        for name, layer in layers.items():

            def hook(_m: nn.Module, _i: object, out: torch.Tensor, _name: str = name) -> None:
                if not isinstance(out, torch.Tensor):
                    raise TypeError(
                        f"layer {_name!r} returned {type(out).__name__}, not a tensor; "
                        "choose a layer whose output is a single tensor"
                    )
                if check is not None:
                    check(_name, out)
                outputs[_name].append(out)

            handles.append(layer.register_forward_hook(hook))
        yield outputs
    finally:
        for h in handles:
            h.remove()


@contextmanager
def capture_layer(
    layer: nn.Module, check: Callable[[str, torch.Tensor], None] | None = None
) -> Iterator[list[torch.Tensor]]:
    """Record the output of one ``layer`` on each forward pass inside the block."""
    with capture_layers({"layer": layer}, check) as outputs:
        yield outputs["layer"]


@contextmanager
def replace_output(
    layer: nn.Module, replace: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace ``layer``'s output by ``replace(output)`` inside the block (activation patching)."""

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        new = replace(out)
        if not isinstance(new, torch.Tensor) or new.shape != out.shape:
            raise ValueError(
                f"a patched activation must keep the layer's output shape {tuple(out.shape)}, "
                f"got {tuple(getattr(new, 'shape', ()))}"
            )
        return new

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
