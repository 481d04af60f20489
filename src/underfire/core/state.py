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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal

from torch import nn

__all__ = ["ModelState", "freeze", "model_state", "patch_forward"]

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
            _set_requires_grad(param for param, _, _ in saved.params)
        yield model
    finally:
        saved.restore()


def _set_requires_grad(params: Any, flag: bool = False) -> None:
    for param in params:
        param.requires_grad_(flag)


class freeze:  # noqa: N801  # used like a function, as torch.no_grad
    """Set ``requires_grad=False`` on every parameter of ``model``, at once.

    Called as a statement, ``freeze(teacher)`` freezes for good (a teacher or substitute that
    is never trained again). Used as a context manager, ``with freeze(model):``, it gives
    every parameter its own flag back on exit, also when the block raises; blocks nest.

    Yields (as a context manager):
        The same ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._flags = [(p, p.requires_grad) for p in model.parameters()]
        _set_requires_grad(p for p, _ in self._flags)

    def __enter__(self) -> nn.Module:
        return self.model

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for param, flag in self._flags:
            param.requires_grad_(flag)


@contextmanager
def patch_forward(module: nn.Module, new_forward: Callable[..., Any]) -> Iterator[nn.Module]:
    """Inside the block, ``module(...)`` runs ``new_forward`` instead of its own ``forward``.

    ``new_forward`` is called like a bound ``forward`` (without ``self``; close over the
    module if it needs it). Hooks registered on the module still run around it. On exit the
    forward that was in place before is put back, also when the block raises, so patches
    nest: an inner patch exits to the outer one, the outermost to the class's ``forward``.

    Yields:
        The same ``module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not callable(new_forward):
        raise TypeError(f"new_forward must be callable, got {type(new_forward).__name__}")
    missing = object()
    previous = module.__dict__.get("forward", missing)
    # an instance attribute shadows the class's forward; nn.Module.__call__ looks it up there
    module.forward = new_forward
    try:
        yield module
    finally:
        if previous is missing:
            del module.forward
        else:
            module.forward = previous
