"""One model-state guard for every attack, interpreter and helper that borrows a model.

Borrowing a model means changing three things: the train/eval mode of its submodules (a
user may have frozen a BatchNorm in eval mode inside a training model, and that mixed state
must come back exactly), the parameters' ``requires_grad`` flags (frozen so that no
parameter graph is built while differentiating w.r.t. the input) and the parameters'
``.grad`` tensors (which a user's optimizer may be accumulating). :func:`model_state`
records all three for *every* submodule and parameter and restores them on exit, also when
the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from torch import nn

__all__ = ["ModelState", "model_state"]

Mode = Literal["eval", "train", "keep"]


class ModelState:
    """A snapshot of a model's mutable bookkeeping: modes, ``requires_grad`` and ``.grad``."""

    def __init__(self, model: nn.Module) -> None:
        self.modes = [(m, m.training) for m in model.modules()]
        self.params = [(p, p.requires_grad, p.grad) for p in model.parameters()]

    def restore(self) -> None:
        for module, training in self.modes:
            module.training = training
        for param, flag, grad in self.params:
            param.requires_grad_(flag)
            param.grad = grad


@contextmanager
def model_state(
    model: nn.Module, *, mode: Mode = "eval", freeze: bool = True
) -> Iterator[nn.Module]:
    """Borrow ``model`` and give it back exactly as it was.

    Args:
        model: any module.
        mode: "eval" (the default: attacks and interpreters explain the deployed model),
            "train", or "keep" (leave every submodule's mode as it is).
        freeze: set ``requires_grad=False`` on every parameter inside the block, so that
            differentiating w.r.t. the input builds no parameter graph. Set False when the
            block trains the model or needs parameter gradients (create_graph through maps).

    Yields:
        The same ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    saved = ModelState(model)
    try:
        if mode == "eval":
            model.eval()
        elif mode == "train":
            model.train()
        elif mode != "keep":
            raise ValueError(f"mode must be 'eval', 'train' or 'keep', got {mode!r}")
        if freeze:
            for param, _, _ in saved.params:
                param.requires_grad_(False)
        yield model
    finally:
        saved.restore()
