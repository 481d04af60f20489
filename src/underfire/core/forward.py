"""Checks on what a borrowed model returns, at the first forward pass of a call.

Attacks and interpreters call the user's model many times; :func:`checked_forward` watches
the *first* forward pass of the block with a hook and checks, once per call:

* the output is (N, K) finite floating logits (:func:`~underfire.core.validation.check_logits`,
  which also warns when rows look like probabilities);
* K agrees with ``model.num_classes`` when the model declares it;
* K ≥ ``min_classes`` (an attack needs a second class to move towards);
* every labelled tensor (``y``, ``target``) holds classes in [0, K).

A torch ``RuntimeError`` raised by that first forward pass (an input of the wrong spatial
size, say) becomes one ``ValueError`` that names the input's shape and the model's
``input_shape``. Later forward passes are not hooked: one synchronization per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from underfire.core.validation import check_labels, check_logits

__all__ = ["ForwardCheck", "checked_forward"]


class ForwardCheck:
    """What the first hooked forward pass saw: ``num_classes`` (None before it ran)."""

    def __init__(self) -> None:
        self.started = False
        self.num_classes: int | None = None
        self.input_shape: tuple[int, ...] | None = None


@contextmanager
def checked_forward(
    model: nn.Module,
    *,
    labels: Mapping[str, torch.Tensor | None] | None = None,
    min_classes: int = 1,
    who: str = "this method",
) -> Iterator[ForwardCheck]:
    """Check the first forward pass of ``model`` inside the block (see the module docstring).

    Args:
        model: the classifier being borrowed.
        labels: named (N,) integer tensors to check against the model's class count.
        min_classes: the fewest logits the caller can work with.
        who: the caller's name, for messages ("PGD", "Grad-CAM").

    Yields:
        A :class:`ForwardCheck`, filled in by the first forward pass.
    """
    state = ForwardCheck()

    def pre_hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
        if not state.started:
            state.started = True
            first = args[0] if args else None
            if isinstance(first, torch.Tensor):
                state.input_shape = tuple(first.shape)

    def hook(_module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if state.num_classes is not None:
            return
        n = args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else -1
        logits = check_logits(out, n if n >= 0 else getattr(out, "shape", [0])[0])
        k = int(logits.shape[1])
        declared = getattr(model, "num_classes", None)
        if isinstance(declared, int) and not isinstance(declared, bool) and declared != k:
            raise ValueError(
                f"the model declares num_classes={declared} but returns {k} logits per image; "
                "fix the model's num_classes or its final layer"
            )
        if k < min_classes:
            raise ValueError(
                f"{who} needs a classifier with at least {min_classes} classes, the model returns "
                f"{k} logit{'s' if k != 1 else ''} per image"
            )
        for name, t in (labels or {}).items():
            if t is not None:
                check_labels(t, t.shape[0], name, num_classes=k)
        state.num_classes = k

    handles = [
        model.register_forward_pre_hook(pre_hook),
        model.register_forward_hook(hook),
    ]
    try:
        yield state
    except RuntimeError as err:
        if not state.started or state.num_classes is not None:
            raise
        expects = getattr(model, "input_shape", None)
        hint = f" (it expects (N, {', '.join(map(str, expects))}))" if expects else ""
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the model cannot run on input of shape {state.input_shape}{hint}: {first_line}; "
            "pass images of the size the model was built for"
        ) from err
    finally:
        for h in handles:
            h.remove()
