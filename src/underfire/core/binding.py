"""Objects that may be bound to a model at construction, as in torchattacks and Captum.

``PGD(model, eps=0.1)`` and ``Saliency(model)`` are the peers' habit; ``PGD(eps=0.1)`` with the
model passed at each call is ours. :class:`Bindable`, the metaclass of attacks and
interpreters, accepts one optional positional ``model`` before the keyword-only settings,
builds the object from the settings alone (so every subclass keeps its plain keyword-only
``__init__``) and stores the model on it. A class whose ``__init__`` takes positional
arguments of its own (RTS's ``network``, ADV²'s ``interpreter``) gets them unchanged, unless
one more positional argument comes first and is an ``nn.Module``: that one is the model
(``ADV2(model, "grad")``; ``RTS(network)`` alone is RTS's own argument, bind it with ``.bind``). The calls then accept both forms
(:func:`split_call`).

Static type checkers read each class's ``__init__``, which does not list ``model``: mypy
reports ``PGD(model, eps=...)`` as an extra positional argument. ``obj.bind(model)`` is the
typed spelling of the same thing.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Self

import torch
from torch import nn

__all__ = ["Bindable", "ModelBound", "accept_bound", "split_call"]


class Bindable(type):
    """Metaclass: ``Cls(model, **settings)`` = ``Cls(**settings)`` bound to ``model``.

    A class may define ``_constructor_kwargs(kwargs) -> kwargs`` (a classmethod) to translate
    peer spellings of its settings (e.g. torchattacks' ``alpha`` for ``step_size``).
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        own = _positional_count(cls)  # e.g. RTS(network), ADV2(interpreter)
        if args and own:
            if len(args) > own and isinstance(args[0], nn.Module):  # ADV2(model, "grad")
                obj = super().__call__(*args[1:], **cls._translate(kwargs))
                obj._model = args[0]
                return obj
            return super().__call__(*args, **kwargs)
        if len(args) > 1 or (args and not isinstance(args[0], nn.Module)):
            got = ", ".join(type(a).__name__ for a in args)
            raise TypeError(
                f"{cls.__name__}() takes an optional model (a torch.nn.Module) as its only "
                f"positional argument and its settings by keyword, got positional ({got}); "
                f"e.g. {cls.__name__}(model, eps=...) or {cls.__name__}(eps=...)"
            )
        obj = super().__call__(**cls._translate(kwargs))
        if args:
            obj._model = args[0]
        return obj

    def _translate(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        translate: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
            cls, "_constructor_kwargs", None
        )
        return dict(kwargs) if translate is None else translate(dict(kwargs))

    @property
    def __signature__(cls) -> inspect.Signature:
        # the settings, as ``__init__`` declares them (without this, inspect would report the
        # metaclass's ``(*args, **kwargs)``); the optional bound model is left out, as above
        init = inspect.signature(cls.__init__)  # type: ignore[misc]  # cls.__init__ is unbound here
        return init.replace(parameters=list(init.parameters.values())[1:])


class ModelBound(metaclass=Bindable):
    """Base of attacks and interpreters: the optional model they are bound to."""

    _model: nn.Module | None = None  # set by ``Cls(model, ...)`` or :meth:`bind`

    @property
    def model(self) -> nn.Module | None:
        """The model this object is bound to (``PGD(model, ...)``, ``Saliency(model)``), or
        None."""
        return self._model

    def bind(self, model: nn.Module) -> Self:
        """A copy of this object bound to ``model``: ``attack.bind(model)(x, y)``,
        ``interp.bind(model).attribute(x)``."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        other = copy.copy(self)
        other._model = model
        return other


def _positional_count(cls: type) -> int:
    """How many positional arguments ``cls.__init__`` takes besides self (a large number for
    ``*args``: then every positional argument is the class's own)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 1 << 30
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def split_call(
    who: str,
    bound: nn.Module | None,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    names: tuple[str, ...],
) -> tuple[nn.Module, dict[str, Any]]:
    """Resolve a call made as ``f(model, *rest)`` or, on a bound object, ``f(*rest)``.

    Args:
        who: the object's class name, for messages.
        bound: the model the object is bound to, or None.
        args, kwargs: the call's arguments (``model=`` by keyword is accepted too).
        names: parameter names of ``rest``, in order (e.g. ``("x", "y", "target")``).

    Returns:
        ``(model, {name: value})`` with only the arguments given (defaults are the caller's).

    An explicit model (first positional argument that is an ``nn.Module``, or ``model=``)
    wins over the bound one.
    """
    rest = dict(kwargs)
    if "model" in rest:
        model = rest.pop("model")
    elif args and isinstance(args[0], nn.Module):
        model, args = args[0], args[1:]
    elif bound is not None:
        model = bound
    elif args and not isinstance(args[0], torch.Tensor):  # a wrong model, not missing one
        model, args = args[0], args[1:]
    else:
        first = type(args[0]).__name__ if args else "nothing"
        raise TypeError(
            f"{who} is not bound to a model: pass it first, {who.lower()}(model, "
            f"{', '.join(names[:2])}, ...), or bind it at construction, {who}(model, ...)(...); "
            f"got {first} as the first argument"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if len(args) > len(names):
        raise TypeError(
            f"{who} call takes at most {len(names)} arguments after the model "
            f"({', '.join(names)}), got {len(args)}"
        )
    values = dict(zip(names, args, strict=False))
    for key, value in rest.items():
        if key not in names:
            raise TypeError(f"{who} call got an unexpected keyword argument {key!r}")
        if key in values:
            raise TypeError(f"{who} call got multiple values for argument {key!r}")
        values[key] = value
    return model, values


def accept_bound(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``(self, model, x, ...)`` method so that an object bound to a model (its
    ``model`` attribute) may be called without the model, and ``model=`` works by keyword."""
    names = tuple(
        p.name
        for p in list(inspect.signature(method).parameters.values())[2:]
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        model, kw = split_call(type(self).__name__, self.model, args, kwargs, names)
        return method(self, model, **kw)

    return wrapper
