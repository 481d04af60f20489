"""The interpreter contract and the pure map operations every interpreter shares.

An interpreter g explains a classifier f: ``g(model, x, target) -> map`` of shape
(N, 1, H, W), one map per image, normalized to [0, 1] per sample (``raw=True`` skips the
normalization; :meth:`Interpreter.attribute` gives the method's native attribution). With
``create_graph=True`` the map stays a differentiable function of ``x`` (and of the model's
parameters), so attacks (ADV²) and training objectives can backpropagate through it; they ask
for it through one method, :meth:`Interpreter.differentiable_map`, which every interpreter
fills through one hook and which a :class:`MapState` lets warm-start across the steps of a
loop (MASK's inner optimization).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, final, overload

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.binding import ModelBound, accept_bound, split_call
from underfire.core.errors import NonFiniteError
from underfire.core.forward import checked_forward
from underfire.core.registry import Registry
from underfire.core.state import model_state
from underfire.core.validation import check_images, check_int, check_labels, check_same_device

__all__ = [
    "Interpreter",
    "MapState",
    "Reduce",
    "normalize_maps",
    "reduce_channels",
    "resize_maps",
    "resolve_target",
]

Reduce = Literal["max", "sum", "mean"]
_EPS = 1e-12

#: Every interpreter class registers here where it is defined: ``@INTERPRETERS.register("grad")``.
INTERPRETERS: Registry[Interpreter] = Registry("interpreter")


def normalize_maps(maps: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Min–max normalize each map of a batch to [0, 1] (differentiable a.e.).

    Args:
        maps: (N, ...) maps.
        eps: floor of the range; a constant map becomes all zeros.

    Returns:
        (N, ...) maps with per-sample minimum 0 and maximum 1.
    """
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(eps)).view_as(maps)


def reduce_channels(
    attr: torch.Tensor, how: Reduce = "max", *, absolute: bool = True
) -> torch.Tensor:
    """(N, C, H, W) attribution → (N, 1, H, W) map: |·| (optional) then max/sum/mean over C.

    ADV²'s GRAD map takes the channel maximum of the absolute gradient.
    """
    a = attr.abs() if absolute else attr
    if how == "max":
        return a.amax(dim=1, keepdim=True)
    if how == "sum":
        return a.sum(dim=1, keepdim=True)
    if how == "mean":
        return a.mean(dim=1, keepdim=True)
    raise ValueError(f"reduce must be 'max', 'sum' or 'mean', got {how!r}")


def resize_maps(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling of (N, 1, h, w) maps to ``size`` = (H, W) (a no-op when already that size)."""
    if len(size) != 2:
        raise ValueError(f"size must be (H, W), got {tuple(size)}")
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=(size[0], size[1]), mode="bilinear", align_corners=False)


def resolve_target(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None
) -> torch.Tensor:
    """Class indices (N,) on x's device: ``None`` → predicted class, an int → that class for all."""
    n = x.shape[0]
    if target is None:
        with torch.no_grad():
            return model(x.detach()).argmax(dim=1)
    if isinstance(target, bool) or not isinstance(target, (int, torch.Tensor)):
        raise TypeError(
            "target must be None (the predicted class), an int class for every image or a (N,) "
            f"tensor of class indices, got {type(target).__name__}"
        )
    num_classes = getattr(model, "num_classes", None)
    if isinstance(target, int):
        if target < 0 or (isinstance(num_classes, int) and target >= num_classes):
            bound = f"[0, {num_classes - 1}]" if isinstance(num_classes, int) else "≥ 0"
            raise ValueError(f"target must be a class index in {bound}, got {target}")
        return torch.full((n,), target, dtype=torch.long, device=x.device)
    target = check_labels(
        target, n, "target", num_classes=num_classes if isinstance(num_classes, int) else None
    )
    return target.to(device=x.device, dtype=torch.long)


@dataclass
class MapState:
    """What a loop that asks for the differentiable map of the same images again and again
    (ADV²'s steps) carries from one step to the next.

    Interpreters whose map is the solution of an optimization (MASK) keep their running
    solution in :attr:`slots` and, rather than solving afresh at every step, refine it by
    ``unroll`` differentiable steps (plain gradient steps of size ``lr``; None: the
    interpreter's own step size), solving afresh every ``reset`` steps (the unrolled steps
    only track the solution). Interpreters with a closed-form map ignore the state.

    Attributes:
        unroll: differentiable steps per call, ≥ 1.
        reset: solve from scratch when ``step % reset == 0``, ≥ 1.
        lr: step size of the unrolled steps, or None.
        step: the caller's step counter; the caller advances it.
        slots: per interpreter (keyed by ``id``), its running solution.
    """

    unroll: int = 2
    reset: int = 50
    lr: float | None = None
    step: int = 0
    slots: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.unroll = check_int(self.unroll, "unroll", minimum=1)
        self.reset = check_int(self.reset, "reset", minimum=1)


class Interpreter(ModelBound):
    """Base class: owns the invariants, subclasses implement :meth:`_attribute`.

    Two calling styles, for every interpreter: ours, ``Saliency()(model, x, target)`` (maps
    normalized to [0, 1]) and ``Saliency().attribute(model, x, target)`` (native attribution);
    and Captum's, with the model bound at construction: ``Saliency(model).attribute(x,
    target=y)`` (the same native attribution, e.g. Captum's ``Saliency`` with ``abs=True``)
    and ``Saliency(model)(x)`` for the maps.

    Invariants, for every call: ``x`` is validated (4-D float in [0, 1], same device as the
    model) and never mutated; every module's train/eval mode is restored (the computation runs
    in eval mode); the parameters' ``.grad`` are left as they were; the map has shape
    (N, 1, H, W); without ``create_graph`` the result is detached.

    Subclasses set ``name`` and implement ``_attribute(model, x, target, create_graph)``
    returning the native attribution, and optionally ``_to_map`` (default: absolute value,
    channel reduction by ``reduce``, bilinear resize to H×W).
    """

    name: str = ""
    #: the map is built from the model's gradients, so differentiating it needs second
    #: derivatives (zero through ReLU: attacks swap in core.autograd's smooth ReLU)
    _second_order: ClassVar[bool] = False
    #: the map is the solution of an inner optimization (MASK), refined through a MapState
    _optimized: ClassVar[bool] = False
    reduce: Reduce = "max"
    absolute: bool = True
    #: channels of :meth:`attribute`'s result for an empty batch (None: the input's channels)
    empty_channels: int | None = None

    @property
    def second_order(self) -> bool:
        """Whether the map is built from the model's gradients (differentiating it then needs
        second derivatives, which are zero through ReLU)."""
        return self._second_order

    @property
    def optimized(self) -> bool:
        """Whether the map solves an inner optimization (then :class:`MapState` warm-starts it)."""
        return self._optimized

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Subclasses that override ``__call__`` or ``attribute`` keep the ``(model, x, ...)``
        # signature; the bound form is resolved here, once for all.
        super().__init_subclass__(**kwargs)
        if "differentiable_map" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides Interpreter.differentiable_map, which is final (the "
                "base class owns validation and model state): implement _differentiable_map"
            )
        for name in ("__call__", "attribute"):
            if name in cls.__dict__:
                setattr(cls, name, accept_bound(cls.__dict__[name]))

    @overload
    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        raw: bool = False,
        create_graph: bool = False,
    ) -> torch.Tensor: ...

    @overload
    def __call__(
        self,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        raw: bool = False,
        create_graph: bool = False,
    ) -> torch.Tensor: ...

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Explain the model on ``x``: ``interp(model, x, target)``, or ``interp(x, target)``
        when bound to a model.

        Args:
            model: classifier returning logits (N, K) for inputs in [0, 1]; may be left out
                when the interpreter is bound (an explicit model wins over the bound one).
            x: (N, C, H, W) images in [0, 1].
            target: (N,) class indices, an int for all images, or None for the predicted class.
            raw: return the unnormalized map instead of the [0, 1]-normalized one.
            create_graph: keep the map differentiable w.r.t. ``x`` and the parameters.

        Returns:
            (N, 1, H, W) maps, normalized per sample to [0, 1] unless ``raw``.
        """
        model, kw = _split(self, args, kwargs)
        return self._maps(model, **kw)

    def _maps(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        raw: bool = False,
        create_graph: bool = False,
    ) -> torch.Tensor:
        with self._guard(model, x, target) as (x_in, t):
            if x_in.shape[0] == 0:
                return x_in.detach().new_zeros((0, 1, *x_in.shape[2:]))
            maps = self._map(model, x_in, t, raw=raw, create_graph=create_graph)
        return maps if create_graph else maps.detach()

    def _map(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor,
        *,
        raw: bool = False,
        create_graph: bool = False,
    ) -> torch.Tensor:
        """The maps of a validated, non-empty batch, inside the guard (hook of the call)."""
        attr = self._attribute(model, x, target, create_graph)
        maps = self._to_map(attr, x)
        check_finite_map(maps, type(self).__name__)
        return maps if raw else normalize_maps(maps)

    @final
    def differentiable_map(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        state: MapState | None = None,
    ) -> torch.Tensor:
        """The [0, 1]-normalized maps (N, 1, H, W) with their autograd graph to ``x`` (and to
        the parameters that require grad): the map attacks (ADV²) and training objectives
        differentiate, for every interpreter, under the same guard as a call.

        Without ``state`` this is ``interp(model, x, target, create_graph=True)``. A loop that
        asks again at every step passes one :class:`MapState`, and interpreters that optimize
        (MASK) then refine their previous solution by a few unrolled steps instead.

        Args:
            model: classifier returning logits.
            x: (N, C, H, W) images in [0, 1]; differentiate w.r.t. it (``requires_grad``).
            target: (N,) class indices, an int for all images, or None for the predicted class.
            state: the loop's :class:`MapState`, or None for a self-contained map.
        """
        with self._guard(model, x, target) as (x_in, t):
            if x_in.shape[0] == 0:
                return x_in.detach().new_zeros((0, 1, *x_in.shape[2:]))
            return self._differentiable_map(model, x_in, t, state)

    def _differentiable_map(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, state: MapState | None
    ) -> torch.Tensor:
        """Hook of :meth:`differentiable_map` (inside the guard; non-empty batch)."""
        return self._map(model, x, target, create_graph=True)

    @overload
    def attribute(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        create_graph: bool = False,
    ) -> torch.Tensor: ...

    @overload
    def attribute(
        self,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        create_graph: bool = False,
    ) -> torch.Tensor: ...

    def attribute(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The method's native attribution (e.g. (N, C, H, W) gradients, (N, 1, h, w) CAM):
        ``attribute(model, x, target)``, or Captum's ``attribute(x, target=y)`` when bound."""
        model, kw = _split(self, args, kwargs)
        return self._native(model, **kw)

    def _native(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        create_graph: bool = False,
    ) -> torch.Tensor:
        with self._guard(model, x, target) as (x_in, t):
            if x_in.shape[0] == 0:
                return x_in.detach().new_zeros((0, self.empty_channels or x.shape[1], *x.shape[2:]))
            attr = self._attribute(model, x_in, t, create_graph)
            check_finite_map(attr, type(self).__name__)
        return attr if create_graph else attr.detach()

    def _attribute(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool
    ) -> torch.Tensor:
        raise NotImplementedError

    def _to_map(self, attr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return resize_maps(
            reduce_channels(attr, self.reduce, absolute=self.absolute), tuple(x.shape[-2:])
        )

    @contextmanager
    def _guard(
        self, model: nn.Module, x: torch.Tensor, target: torch.Tensor | int | None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Validate a call, borrow ``model`` and yield ``(x, target classes)``.

        Raises TypeError/ValueError for a non-module model, images that are not (N, C, H, W)
        floats in [0, 1], tensors on another device or of another floating dtype than the
        model, targets of the wrong shape or outside the model's classes, and a model output
        that is not (N, K) finite logits (probabilities only warn).
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_images(x)
        check_same_device(model, x)
        if isinstance(target, torch.Tensor):
            check_same_device(model, target)
        labels: dict[str, torch.Tensor | None] = {}
        # eval mode for every submodule, restored exactly (also mixed train/eval states);
        # parameters stay differentiable so maps can carry a graph to them (create_graph).
        with (
            model_state(model, freeze=False),
            checked_forward(model, labels=labels, who=type(self).__name__),
        ):
            if x.shape[0] == 0 and target is None:  # nothing to explain: no forward pass
                t = x.new_zeros(0, dtype=torch.long)
            else:
                t = resolve_target(model, x, target)
            labels["target"] = t  # checked against the class count at the first forward pass
            # x itself is never written to; subclasses differentiate w.r.t. input_leaf(x, ...), a
            # detached copy unless the caller asked for a graph to its own x (create_graph).
            yield x, t

    def config(self) -> dict[str, object]:
        """Constructor arguments, for reports and results files."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple, type(None)))
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


_CALL_NAMES = ("x", "target", "raw", "create_graph")


def _split(
    interp: Interpreter, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    model, kw = split_call(type(interp).__name__, interp.model, args, kwargs, _CALL_NAMES)
    if "x" not in kw:
        raise TypeError(f"{type(interp).__name__} call needs the images x")
    return model, kw


def check_finite_map(maps: torch.Tensor, who: str) -> None:
    """Raise :class:`NonFiniteError` when an attribution holds NaN or inf."""
    if not bool(torch.isfinite(maps.detach()).all()):
        raise NonFiniteError(
            f"{who} produced NaN or infinite attributions (the model's gradients are not "
            "finite); check the model for operations that are not differentiable everywhere"
        )


def check_reduce(reduce: object) -> Reduce:
    """The channel reduction of a map: "max", "sum" or "mean"."""
    if reduce not in ("max", "sum", "mean"):
        raise ValueError(f"reduce must be 'max', 'sum' or 'mean', got {reduce!r}")
    return reduce


def input_leaf(x: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """The tensor to differentiate w.r.t.: ``x`` itself when it carries a graph we must keep,
    otherwise a detached copy that requires grad (never ``x`` modified in place)."""
    if create_graph and x.requires_grad:
        return x
    return x.detach().requires_grad_(True)


def class_scores(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logit of each sample's target class, (N,)."""
    return logits.gather(1, target.view(-1, 1)).squeeze(1)
