"""The attack contract, owned once: ``attack(model, x, y, target=None) -> x_adv``.

Every attack in :mod:`underfire.attacks` subclasses :class:`Attack` and fills one hook,
:meth:`Attack._perturb` (and, when it can share work across radii, :meth:`Attack._sweep`).
The public :meth:`Attack.__call__` and :meth:`Attack.sweep` are final (``typing.final``, and
a subclass that defines either is refused with a TypeError when it is created), so the base
class owns the invariants for every attack:

* inputs are validated (images in [0, 1], labels, devices) with clear errors;
* the model is put in eval mode and its mode restored; its parameters' ``requires_grad``
  flags and ``.grad`` tensors are left exactly as they were (gradients are taken with
  :func:`torch.autograd.grad` with respect to the input only);
* the input is never mutated; the result is detached, has the input's shape, dtype and
  device, lies in [0, 1] and inside the attack's ε-ball (L∞ or L2);
* targeting is an argument: ``target`` is ``None`` (untargeted, or the attack's default
  rule), a tensor of target classes, or a rule name: ``"next"`` = (y + 1) mod K as in
  Ross & Doshi-Velez (2018), ``"random"`` (uniform over the classes ≠ y) or
  ``"least-likely"`` (the clean input's lowest logit, Kurakin et al. 2017).

Pure helpers for the math (losses, projections, gradient soundness) live here too.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, final, overload

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.binding import ModelBound, split_call
from underfire.core.errors import NonFiniteError
from underfire.core.forward import checked_forward
from underfire.core.norms import NORMS, get_norm
from underfire.core.registry import Registry
from underfire.core.state import model_state
from underfire.core.validation import (
    check_eps,
    check_images,
    check_labels,
    check_same_device,
)

__all__ = [
    "ATTACKS",
    "TARGET_RULES",
    "Attack",
    "AttackWarning",
    "GradientMaskingWarning",
    "SoundnessWarning",
    "check_gradient",
    "loss_gradient",
    "margin_loss",
    "project",
    "resolve_target",
]

TARGET_RULES = ("next", "random", "least-likely")

#: Every attack class registers here where it is defined: ``@ATTACKS.register("pgd")``.
ATTACKS: Registry[Attack] = Registry("attack")


class AttackWarning(UserWarning):
    """Base class of the warnings underfire's attacks and evaluation helpers emit."""


class GradientMaskingWarning(AttackWarning):
    """Input gradients are zero, NaN or underflowing: the attack cannot see the loss surface.

    Defensive distillation (Papernot et al. 2016) masks gradients this way: FGSM then
    returns the clean input (sign(0) = 0) although the model is not robust (Carlini &
    Wagner 2017; Ross & Doshi-Velez 2018, claim 3).
    """


class SoundnessWarning(AttackWarning):
    """An evaluation result that cannot be right for a working attack (Carlini et al. 2019,
    "On Evaluating Adversarial Robustness"): accuracy rising with ε, or an iterative attack
    weaker than its single-step version."""


# ---------------------------------------------------------------------------- pure functions


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project perturbations ``delta`` (N, ...) onto the ε-ball of ``norm`` (per sample)."""
    return get_norm(norm).project(delta, eps)


def margin_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool, kappa: float = 0.0
) -> torch.Tensor:
    """Carlini & Wagner's f, per sample: how far ``labels`` is from being (not) predicted.

    Untargeted: max(Z_y − max_{i≠y} Z_i, −κ); targeted: max(max_{i≠t} Z_i − Z_t, −κ).
    Minimizing it reaches the goal; it is ≤ 0 exactly when the goal is reached.
    """
    real = logits.gather(1, labels[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).amax(1)
    diff = other - real if targeted else real - other
    return diff.clamp_min(-kappa)


def loss_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, targeted: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the attack objective (to *ascend*) w.r.t. the input only, and the logits.

    The objective is CE(f(x), y) untargeted and −CE(f(x), t) targeted, summed over the
    batch (not averaged: averaging divides every gradient by N and makes underflow likelier).
    No parameter gradient is accumulated (``torch.autograd.grad`` on ``x`` only).
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = F.cross_entropy(logits, labels, reduction="sum")
    if targeted:
        loss = -loss
    (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def check_gradient(grad: torch.Tensor, attack: str, *, stacklevel: int = 3) -> None:
    """Warn (:class:`GradientMaskingWarning`) when input gradients look masked.

    Symptoms checked per sample: all-zero gradient, NaN/inf entries, and underflow
    (largest magnitude below 1e-30, where the float32 loss surface is flat to the attack).
    """
    flat = grad.detach().flatten(1)
    n = flat.shape[0]
    if n == 0:
        return
    finite = torch.isfinite(flat).all(1)
    mag = flat.abs().amax(1)
    stats = torch.stack(
        [(~finite).sum(), ((mag == 0) & finite).sum(), ((mag > 0) & (mag < 1e-30) & finite).sum()]
    ).tolist()
    nonfinite, zero, tiny = stats
    hint = (
        "a symptom of gradient masking (e.g. defensive distillation, Papernot et al. 2016), not of "
        "robustness; try a targeted attack (TGSM), a logit-margin attack (CW) or a transfer/black-box attack"
    )
    if nonfinite:
        warnings.warn(
            f"{attack}: {nonfinite} of {n} input gradients contain NaN or inf; {hint}",
            GradientMaskingWarning,
            stacklevel=stacklevel,
        )
    if zero:
        warnings.warn(
            f"{attack}: {zero} of {n} input gradients are all zero (sign(0) = 0, so these inputs are "
            f"returned unchanged); {hint}",
            GradientMaskingWarning,
            stacklevel=stacklevel,
        )
    if tiny:
        warnings.warn(
            f"{attack}: {tiny} of {n} input gradients underflow (max |∂L/∂x| < 1e-30); {hint}",
            GradientMaskingWarning,
            stacklevel=stacklevel,
        )


def check_finite_result(x_adv: torch.Tensor, attack: str) -> torch.Tensor:
    """Raise :class:`NonFiniteError` when an attack's result holds NaN or inf."""
    if not bool(torch.isfinite(x_adv).all()):
        raise NonFiniteError(
            f"{attack} produced NaN or infinite values (the model's input gradients are not "
            "finite); check the model for operations that are not differentiable everywhere "
            "(sqrt, log, division) on inputs in [0, 1]"
        )
    return x_adv


def num_classes_of(model: nn.Module, x: torch.Tensor) -> int:
    k = getattr(model, "num_classes", None)
    if isinstance(k, int) and k > 0:
        return k
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def resolve_target(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | str | None,
    *,
    generator: torch.Generator | None = None,
    logits: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Turn ``target`` (None, a tensor of classes, or a rule name) into (N,) int64 classes or None.

    ``"least-likely"`` is the class with the lowest clean logit among the classes other than
    ``y`` (a target equal to ``y`` would be met without any perturbation). ``logits``, the
    model's output on ``x`` when already computed, saves a forward pass.
    """
    if target is None:
        return None
    if isinstance(target, str):
        rule = target.strip().lower().replace("_", "-")
        if rule not in TARGET_RULES:
            raise ValueError(
                f"unknown target rule {target!r}; use a tensor of classes or one of {', '.join(TARGET_RULES)}"
            )
        if logits is None:
            with torch.no_grad():
                logits = model(x)
        k = int(logits.shape[1])
        if k < 2:
            raise ValueError(f"targeted attacks need at least 2 classes, the model has {k}")
        check_labels(y, x.shape[0], num_classes=k)
        if rule == "least-likely":
            own = F.one_hot(y.long(), k).bool()
            return logits.detach().masked_fill(own, float("inf")).argmin(1)
        if rule == "next":
            return (y.long() + 1) % k
        shift = torch.randint(
            1,
            k,
            (y.shape[0],),
            generator=generator,
            device=generator.device if generator is not None else "cpu",
        )
        return (y.long() + shift.to(y.device)) % k
    if not isinstance(target, torch.Tensor):
        raise TypeError(
            f"target must be None, a tensor of class indices or one of {TARGET_RULES}, got {type(target).__name__}"
        )
    declared = getattr(model, "num_classes", None)
    k_known = int(logits.shape[1]) if logits is not None else declared
    check_labels(
        target, y.shape[0], name="target", num_classes=k_known if isinstance(k_known, int) else None
    )
    if target.device != y.device:
        raise ValueError(
            f"target is on {target.device} but y is on {y.device}; move it with target.to(y.device)"
        )
    return target.long()


# ---------------------------------------------------------------------------- the base class


class Attack(ModelBound):
    """Base of every attack: ``attack(model, x, y, target=None) -> x_adv``.

    Also torchattacks' style, for every attack: ``PGD(model, eps=8/255, alpha=2/255,
    steps=10)(x, y)`` binds the model at construction (or ``PGD(eps=...).bind(model)``), and
    ``alpha`` is accepted as an alias of ``step_size`` where the attack has one.

    Subclasses set ``eps``/``norm`` (for the final projection; ``norm=None`` means the
    attack bounds its perturbation otherwise, e.g. JSMA's L0 budget) and implement
    :meth:`_perturb`.

    Attributes:
        name: registry name.
        eps: radius of the perturbation ball, or None when unbounded (CW) or not Lp (JSMA).
        norm: "linf", "l2" or None.
        default_target: rule used when the call passes ``target=None`` (TGSM and JSMA use
            "next"); None means untargeted.
        deterministic: whether the result is a function of (model, x, y, target) only, so
            that the batched result equals the per-sample one.
        iterative: whether the attack takes several gradient steps.
    """

    name: ClassVar[str] = ""
    deterministic: bool = True  # per instance where it depends on settings (PGD's random start)
    iterative: ClassVar[bool] = False
    eps: float | None = None
    norm: str | None = None
    default_target: str | None = None
    #: whether a call without ``target`` is refused (ADV² needs a target class)
    requires_target: ClassVar[bool] = False
    #: whether the attack minimizes its perturbation instead of bounding it by an ε (CW, DDN,
    #: JSMA): it takes no ``eps``, and an audit reports the size of what it found
    minimal: ClassVar[bool] = False
    seed: int | None = None

    @classmethod
    def _constructor_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """torchattacks' ``alpha`` → ``step_size`` (refused when both are given)."""
        if "alpha" in kwargs and "step_size" in inspect.signature(cls.__init__).parameters:
            if "step_size" in kwargs:
                raise TypeError(
                    f"{cls.__name__} got both alpha and step_size; alpha is torchattacks' name "
                    "for step_size: pass one of them"
                )
            kwargs["step_size"] = kwargs.pop("alpha")
        return kwargs

    #: keyword-only options a call accepts besides (x, y, target), handed to :meth:`_call_scope`
    #: (ADV²'s per-call ``target_map``)
    call_options: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Foolbox's final __call__, enforced at run time too (typing.final binds only type
        # checkers): the contract of the call and of the ε sweep is this class's alone
        super().__init_subclass__(**kwargs)
        for name, hook in (("__call__", "_perturb"), ("sweep", "_sweep")):
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides Attack.{name}, which is final (the base class owns "
                    f"validation, model state and the result's bounds): implement {hook} instead"
                )

    @overload
    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | str | None = None,
    ) -> torch.Tensor: ...

    @overload
    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | str | None = None
    ) -> torch.Tensor: ...

    @final
    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Craft adversarial examples: ``attack(model, x, y, target=None)``, or ``attack(x, y,
        target=None)`` when the attack is bound to a model (torchattacks' style).

        Args:
            model: classifier taking [0, 1] images and returning logits (N, K); may be left
                out when the attack is bound (an explicit model wins over the bound one).
            x: (N, C, H, W) floating images in [0, 1]; not modified.
            y: (N,) true labels (int).
            target: None, (N,) target classes, or a rule name ("next", "random", "least-likely").
            **options: the attack's own call options (:attr:`call_options`; ADV²'s
                ``target_map``).

        Returns:
            (N, C, H, W) adversarial examples, detached, same dtype and device as ``x``.
        """
        options = {k: kwargs.pop(k) for k in self.call_options if k in kwargs}
        model, kw = split_call(type(self).__name__, self._model, args, kwargs, ("x", "y", "target"))
        if "x" not in kw or "y" not in kw:
            raise TypeError(f"{type(self).__name__} call needs x and y")
        with self._call_scope(**options):
            return self._attack(model, kw["x"], kw["y"], kw.get("target"))

    def _attack(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | str | None,
    ) -> torch.Tensor:
        target = self._check_call(model, x, y, target)
        x0 = x.detach()
        if x0.shape[0] == 0:
            return x0.clone()
        with self._borrow(model, x0, y, target) as t:
            x_adv = self._perturb(model, x0, y.long(), t)
            return self._finalize(x0, x_adv)

    @contextmanager
    def _borrow(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | str | None
    ) -> Iterator[torch.Tensor | None]:
        """Borrow ``model`` (eval mode, parameters frozen, everything restored on exit), check
        its output on the clean batch once and yield the resolved target classes (or None)."""
        labels = {"y": y, "target": target if isinstance(target, torch.Tensor) else None}
        with (
            model_state(model),
            checked_forward(model, labels=labels, min_classes=2, who=type(self).__name__) as seen,
        ):
            # the first forward pass (a target rule's, or the attack's own) is checked by the
            # hook; paths that run none (ε = 0) get one extra clean pass so nothing goes unchecked
            yield resolve_target(model, x, y, target, generator=self._generator(x.device))
            if seen.num_classes is None:
                with torch.no_grad():
                    model(x)

    # -- hooks -------------------------------------------------------------------------

    def _check_call(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | str | None
    ) -> torch.Tensor | str | None:
        """Validate a call's data; returns ``target`` with the attack's default rule applied.

        Raises TypeError/ValueError for a non-module model, images that are not (N, C, H, W)
        floats in [0, 1], labels of the wrong shape or dtype, tensors on another device or
        of another floating dtype than the model, and explicit targets equal to ``y``.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_images(x)
        check_labels(y, x.shape[0])
        check_same_device(model, x, y)
        if isinstance(target, torch.Tensor):
            check_labels(target, x.shape[0], name="target")
            if target.device != y.device:
                raise ValueError(
                    f"target is on {target.device} but y is on {y.device}; "
                    "move it with target.to(y.device)"
                )
            same = int((target.long() == y.long()).sum())
            if same:
                raise ValueError(
                    f"target equals the true label y for {same} of {x.shape[0]} samples; a "
                    "targeted attack needs a class other than y (for those samples the attack "
                    "would count as successful without changing anything): choose other targets, "
                    "or a rule such as 'next'"
                )
        return self.default_target if target is None else target

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        """Return x_adv for clean ``x`` (do not modify it in place). ``target`` None = untargeted."""
        raise NotImplementedError

    @contextmanager
    def _call_scope(self, **options: Any) -> Iterator[None]:
        """Hook: per-call state from the call's :attr:`call_options`, reset after the call."""
        if options:
            raise TypeError(f"{type(self).__name__} call got unexpected options {sorted(options)}")
        yield

    @final
    def sweep(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: Sequence[float],
        target: torch.Tensor | str | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield x_adv for each ε in ``eps``: what ``attack.with_eps(e)(model, x, y, target)``
        returns, with the work that does not depend on ε done once where the attack can
        (FGSM: one gradient; the substitute attack: one substitute).

        Raises ValueError for an attack without ε (CW, JSMA) and for invalid radii.
        """
        if self.eps is None:
            raise ValueError(f"{type(self).__name__} has no ε to sweep")
        radii = [check_eps(e, self.norm or "linf") for e in eps]
        target = self._check_call(model, x, y, target)
        if x.shape[0] == 0:
            for _ in radii:
                yield x.detach().clone()
            return
        yield from self._sweep(model, x.detach(), y, radii, target)

    def _sweep(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: list[float],
        target: torch.Tensor | str | None,
    ) -> Iterator[torch.Tensor]:
        """Hook of :meth:`sweep`: x_adv for each (validated) ε of a checked, non-empty batch;
        ``target`` has the attack's default rule applied. By default one call per ε."""
        for e in eps:
            yield self.with_eps(e)(model, x, y, target)

    # -- helpers -----------------------------------------------------------------------

    def with_eps(self, eps: float) -> Attack:
        """A copy of this attack with radius ``eps`` (ε = 0 gives an attack returning x)."""
        if self.eps is None:
            raise ValueError(f"{type(self).__name__} has no ε to sweep")
        check_eps(eps, self.norm or "linf")
        other = copy.copy(self)
        other.eps = float(eps)
        return other

    def _settings(self) -> dict[str, Any]:
        # constructor settings: not private, not fitted state (trailing "_"), not derived flags
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_")
            and not k.endswith("_")
            and k not in ("deterministic", "queries", "agreement")
        }

    def config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready values, for results files and reports."""

        def plain(v: Any) -> Any:
            if isinstance(v, Attack):
                return v.config()
            if v is None or isinstance(v, (bool, int, float, str)):
                return v
            if isinstance(v, (tuple, list)):  # per-stage steps and λ of ADV², for instance
                return [plain(item) for item in v]
            return getattr(v, "__qualname__", None) or type(v).__name__

        return {"name": self.name, **{k: plain(v) for k, v in self._settings().items()}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed)
        return gen

    def _finalize(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        x_adv = check_finite_result(x_adv.detach(), type(self).__name__)
        if self.eps is not None and self.norm is not None:
            if self.eps == 0:
                return x.clone()
            x_adv = x + project(x_adv - x, self.eps, self.norm)
        return x_adv.clamp(0.0, 1.0).to(x.dtype)


# ---------------------------------------------------------------------------- validation


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {tuple(NORMS)}, got {norm!r}")
    return norm


def check_ball(norm: str, eps: object) -> tuple[str, float]:
    """(norm, ε) of an attack's ball: the norm first, then the radius for that norm (an L∞
    radius above 1 is refused)."""
    norm = check_norm(norm)
    return norm, check_eps(eps, norm)


def check_target_rule(rule: str | None) -> str | None:
    if rule is not None and rule not in TARGET_RULES:
        raise ValueError(f"target rule must be None or one of {TARGET_RULES}, got {rule!r}")
    return rule
