"""ADV²: fool a classifier and its interpreter at once (Zhang, Wang, Shen, Ji, Luo & Wang,
"Interpretable Deep Learning under Fire", USENIX Security 2020).

An interpretable deep learning system is a classifier f plus an interpreter g. ADV² looks for
x in the L∞ ball of radius ε around x₀ with f(x) = t and g(x; f) ≈ m_t:

    minimize  ℓ_prd(f(x), t) + λ·ℓ_int(g(x; f), m_t)    subject to ‖x − x₀‖∞ ≤ ε,

with ℓ_prd the cross-entropy to a label-smoothed target (mass ``label_smoothing`` on t, the
rest spread evenly; smoothing keeps the prediction term from saturating), ℓ_int the squared
distance between the [0, 1]-normalized maps (summed over pixels, "sse", for GRAD as in the
authors' code; averaged, "mse", for CAM), and λ scheduled over stages. The search is signed
gradient descent with step ``step_size`` from a targeted PGD warm start; per sample the attack
keeps the iterate that reaches t with confidence ≥ κ and the smallest map distance.

Interpreters (anything registered in :mod:`underfire.interpreters`):

* GRAD, SmoothGrad, integrated gradients, Grad-CAM: the map is a gradient, so ℓ_int needs
  second derivatives, which are zero through ReLU; the model's ReLU modules are swapped for
  :class:`~underfire.core.autograd.SmoothReLU` (exact forward, smooth backward) while the
  attack differentiates (no model copy). Candidates are judged on the true map.
* CAM, RTS: the map is a forward computation, differentiated directly. RTS attacks may add a
  term on the RTS encoder's own prediction (``encoder=``); underfire's RTS uses the
  classifier itself as encoder, where that term is ℓ_prd again.
* MASK: bi-level. The mask estimate m*(x) is refined by a few optimizer steps at each
  iteration and x is updated through ``mask_unroll`` unrolled, differentiable mask steps
  (:meth:`Mask.optimize`); every ``mask_reset`` iterations MASK is re-run from scratch.
* :class:`~underfire.interpreters.Ensemble`: the weighted mean of its members' maps, each
  member handled as above.

>>> attack = ADV2("grad", preset="small")
>>> x_adv = attack(model, x, y, target="next")
>>> attack.result.summary()     # success rate, confidence, map L1 and top-k IoU to m_t
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.base import ATTACKS, Attack
from underfire.attacks.pgd import PGD
from underfire.core.autograd.conv import fast_conv_double_backward
from underfire.core.autograd.smooth_relu import DEFAULT_TAU, smooth_relu
from underfire.core.norms import LINF
from underfire.core.state import model_state
from underfire.core.validation import (
    check_eps,
    check_float,
    check_int,
    check_positive,
    check_same_device,
    check_seed,
)
from underfire.interpreters.base import INTERPRETERS, Interpreter, normalize_maps
from underfire.interpreters.ensemble import Ensemble
from underfire.interpreters.mask import Mask, MaskWarning
from underfire.metrics import l1_distance, topk_iou

__all__ = [
    "ADV2",
    "PRESETS",
    "ADV2Result",
    "affine_batch_norm",
    "attack_patches",
    "joint_loss_gradient",
    "map_distance",
]

Distance = Literal["sse", "mse"]
Schedule = Literal["stages", "linear"]

#: Interpreters whose map is a gradient: differentiating it needs the smooth ReLU backward.
SECOND_ORDER = ("grad", "smoothgrad", "ig", "gradcam", "mask")

# Per interpreter family and input size. "imagenet": the authors' public code
# (github.com/alps-lab/adv2): GRAD 300 PGD steps then stages of 301/201/101/101 steps with
# λ = 0.001/0.004/0.01/0.05 on the summed squared distance of 4×4-average-pooled maps, keeping
# the closest iterate with p_t > 0.8; CAM 400 PGD steps then 1200 steps of NLL + c·MSE, c ramping
# linearly 5 → 10. MASK, RTS and ensembles: underfire's choices in the same spirit (the paper
# gives no numbers). "small": tuned here on 8×8 digits and 28×28 MNIST on a CPU (docs/attacks.md).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "imagenet": {
        "gradient": dict(
            warm_steps=300,
            steps=(301, 201, 101, 101),
            lam=(0.001, 0.004, 0.01, 0.05),
            schedule="stages",
            distance="sse",
            pool=4,
            kappa=0.8,
            label_smoothing=0.95,
            check_every=10,
        ),
        "cam": dict(
            warm_steps=400,
            steps=1200,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.0,
            label_smoothing=1.0,
            check_every=10,
        ),
        "mask": dict(
            warm_steps=300,
            steps=600,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=1,
        ),
    },
    "small": {
        "gradient": dict(
            warm_steps=20,
            steps=(40, 40, 40),
            lam=(0.05, 0.2, 1.0),
            schedule="stages",
            distance="sse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=1,
        ),
        "cam": dict(
            warm_steps=20,
            steps=120,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=1,
        ),
        "mask": dict(
            warm_steps=20,
            steps=60,
            lam=(5.0, 10.0),
            schedule="linear",
            distance="mse",
            pool=1,
            kappa=0.5,
            label_smoothing=0.95,
            check_every=5,
        ),
    },
}
_FAMILY = {
    "grad": "gradient",
    "smoothgrad": "gradient",
    "ig": "gradient",
    "gradcam": "cam",
    "cam": "cam",
    "rts": "cam",
    "mask": "mask",
    "ensemble": "cam",
}


# ---------------------------------------------------------------------------- record


@dataclass
class ADV2Result:
    """Per-sample outcome of one ADV² call (all tensors (N,), on the input's device).

    Attributes:
        target: the target classes t.
        prediction: f(x_adv).
        success: f(x_adv) = t (the paper's attack success).
        confidence: softmax probability of t at x_adv.
        l1: mean absolute difference between g(x_adv) and m_t (both [0, 1] maps).
        iou: top-k IoU of g(x_adv) and m_t, averaged over :data:`underfire.metrics.DEFAULT_KS`.
        distance: the attack's own map distance ℓ_int at the returned x_adv (on the map the
            attack optimized; for MASK its estimate).
    """

    target: torch.Tensor
    prediction: torch.Tensor
    success: torch.Tensor
    confidence: torch.Tensor
    l1: torch.Tensor
    iou: torch.Tensor
    distance: torch.Tensor

    def summary(self) -> dict[str, float]:
        """Batch means: success rate, and confidence/L1/IoU over all samples."""
        n = max(1, int(self.success.numel()))
        return {
            "n": int(self.success.numel()),
            "success_rate": float(self.success.float().sum()) / n,
            "confidence": float(self.confidence.float().mean()) if self.success.numel() else 0.0,
            "l1": float(self.l1.float().mean()) if self.success.numel() else 0.0,
            "iou": float(self.iou.float().mean()) if self.success.numel() else 0.0,
        }

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists, for results files."""
        return {k: getattr(self, k).detach().cpu().tolist() for k in self.__dataclass_fields__}


# ---------------------------------------------------------------------------- pure functions


def map_distance(
    maps: torch.Tensor, target_maps: torch.Tensor, distance: Distance = "sse", pool: int = 1
) -> torch.Tensor:
    """ℓ_int per sample: squared distance of (N, 1, H, W) maps, after ``pool``×``pool`` average
    pooling, summed ("sse") or averaged ("mse") over pixels. Differentiable."""
    if pool > 1:
        maps = F.avg_pool2d(maps, pool, ceil_mode=True)
        target_maps = F.avg_pool2d(target_maps, pool, ceil_mode=True)
    sq = (maps - target_maps).pow(2).flatten(1)
    return sq.sum(1) if distance == "sse" else sq.mean(1)


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, mass: float = 0.95
) -> torch.Tensor:
    """Cross-entropy (N,) to a soft label with ``mass`` on the target, the rest spread evenly
    over the other classes (ADV²'s label smoothing; ``mass=1`` is the plain cross-entropy)."""
    logp = F.log_softmax(logits, dim=1)
    if mass >= 1.0:
        return -logp.gather(1, target[:, None]).squeeze(1)
    k = logits.shape[1]
    soft = torch.full_like(logp, (1.0 - mass) / max(1, k - 1))
    soft.scatter_(1, target[:, None], mass)
    return -(soft * logp).sum(1)


# ---------------------------------------------------------------------------- map plumbing


@contextlib.contextmanager
def affine_batch_norm(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, evaluation-mode batch norm runs as one fused ``x·s + b`` per channel.

    Same function (s = γ/√(var + ε), b = β − μ·s, up to float rounding); its backward is a
    multiplication whose own backward is another, where PyTorch's generic double backward of
    ``native_batch_norm`` spends a dozen passes per layer (an eighth of an ADV²-GRAD step on
    the Ross CNN). Training-mode layers are left alone.
    """
    patched = [
        mod
        for mod in model.modules()
        if isinstance(mod, nn.modules.batchnorm._BatchNorm)
        and not mod.training
        and mod.running_mean is not None
        and mod.running_var is not None
        and type(mod).forward is nn.modules.batchnorm._BatchNorm.forward
        and "forward" not in mod.__dict__
    ]

    def affine(mod: nn.modules.batchnorm._BatchNorm) -> Any:
        def forward(x: torch.Tensor) -> torch.Tensor:
            assert mod.running_var is not None and mod.running_mean is not None
            scale = torch.rsqrt(mod.running_var + mod.eps)
            if mod.weight is not None:
                scale = scale * mod.weight
            shift = -mod.running_mean * scale
            if mod.bias is not None:
                shift = shift + mod.bias
            shape = [1, -1] + [1] * (x.dim() - 2)
            return torch.addcmul(shift.view(shape), x, scale.view(shape))

        return forward

    for mod in patched:
        mod.forward = affine(mod)  # type: ignore[method-assign]
    try:
        yield model
    finally:
        for mod in patched:
            del mod.forward


@contextlib.contextmanager
def attack_patches(model: nn.Module, smooth: bool, tau: float = DEFAULT_TAU) -> Iterator[nn.Module]:
    """The model as ADV² differentiates it, inside the block (all restored on exit):

    * ``smooth``: ReLU modules with the smooth backward (:func:`smooth_relu`), for maps that
      are gradients;
    * evaluation-mode batch norm as one fused affine op (:func:`affine_batch_norm`);
    * frozen convolutions whose double backward skips the unused weight term
      (:func:`~underfire.core.autograd.fast_conv_double_backward`).

    Only the smooth ReLU changes a derivative (the point of it); the other two give the same
    values and gradients, faster.
    """
    with contextlib.ExitStack() as stack:
        if smooth:
            stack.enter_context(smooth_relu(model, tau))
        stack.enter_context(affine_batch_norm(model))
        stack.enter_context(fast_conv_double_backward(model))
        yield model


def _family(interpreter: Interpreter) -> str:
    return _FAMILY.get(interpreter.name, "cam")


def _needs_smoothing(interpreter: Interpreter) -> bool:
    if isinstance(interpreter, Ensemble):
        return any(_needs_smoothing(m) for m in interpreter.members)
    return interpreter.name in SECOND_ORDER


def _members(interpreter: Interpreter) -> Iterator[Interpreter]:
    if isinstance(interpreter, Ensemble):
        for m in interpreter.members:
            yield from _members(m)
    else:
        yield interpreter


class _MaskState:
    """The bi-level attack's running estimate m*(x) of each MASK interpreter's coarse mask."""

    def __init__(self, unroll: int, reset: int, lr: float | None = None) -> None:
        self.unroll, self.reset, self.lr = unroll, reset, lr
        self.masks: dict[int, torch.Tensor] = {}
        self.iteration = 0

    def differentiable_map(
        self, mask: Mask, model: nn.Module, x: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        key = id(mask)
        est = self.masks.get(key)
        if est is None or est.shape[0] != x.shape[0] or self.iteration % self.reset == 0:
            # a fresh MASK run keeps the estimate honest (the unrolled steps only track it)
            est = mask.optimize(model, x.detach(), t)
        # plain gradient steps: Adam's first step from fresh moments is ≈ lr·sign(g), whose
        # derivative w.r.t. x vanishes, so unrolled Adam would carry almost no gradient
        m = mask.optimize(
            model,
            x,
            t,
            init=est.detach(),
            steps=self.unroll,
            create_graph=True,
            optimizer="sgd",
            sgd_lr=self.lr,
        )
        self.masks[key] = m.detach()
        return normalize_maps(mask.mask_to_map(m, (x.shape[-2], x.shape[-1])))


def _attack_map(
    interpreter: Interpreter,
    model: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    masks: _MaskState,
) -> torch.Tensor:
    """g(x) for target t, differentiable w.r.t. ``x``."""
    if isinstance(interpreter, Mask):
        return masks.differentiable_map(interpreter, model, x, t)
    if isinstance(interpreter, Ensemble):
        total = sum(interpreter.weights)
        parts = [
            _attack_map(m, model, x, t, masks) * (w / total)
            for m, w in zip(interpreter.members, interpreter.weights, strict=True)
            if w > 0
        ]
        return normalize_maps(torch.stack(parts).sum(0))
    return interpreter(model, x, t, create_graph=True)


def _judge_map(
    interpreter: Interpreter, model: nn.Module, x: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The map a user would see: the true model (no smoothing), no graph, MASK run in full.
    Its warnings about single maps are for users of the interpreter, not for the search."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskWarning)
        return interpreter(model, x, t)


def joint_loss_gradient(
    model: nn.Module,
    interpreter: Interpreter,
    x: torch.Tensor,
    target: torch.Tensor,
    target_map: torch.Tensor,
    lam: float,
    *,
    label_smoothing: float = 0.95,
    distance: Distance = "sse",
    pool: int = 1,
    encoder: nn.Module | None = None,
    encoder_weight: float = 1.0,
    masks: _MaskState | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient w.r.t. ``x`` of Σ_i ℓ_prd(f(x_i), t_i) + λ·ℓ_int(g(x_i), m_t,i) (one ADV² step).

    The caller provides the smooth-ReLU context for second-order interpreters (and the other
    :func:`attack_patches`, which only make it faster) and the model state (eval, frozen
    parameters). The logits are taken from the interpreter's own forward
    pass on ``x`` when it makes one (GRAD, CAM, Grad-CAM, RTS), saving a forward.

    Returns:
        (gradient (N, C, H, W), logits (N, K) detached, maps (N, 1, H, W) detached,
        ℓ_int (N,) detached).
    """
    masks = masks if masks is not None else _MaskState(unroll=2, reset=50)
    xg = x.detach().requires_grad_(True)
    seen: list[torch.Tensor] = []

    def keep_logits(_m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        if inputs and inputs[0] is xg and isinstance(out, torch.Tensor) and out.requires_grad:
            seen.append(out)

    handle = model.register_forward_hook(keep_logits)
    try:
        maps = _attack_map(interpreter, model, xg, target, masks)
    finally:
        handle.remove()
    if not maps.requires_grad:
        raise ValueError(
            f"ADV²: the {type(interpreter).__name__} interpreter returned a map with no autograd graph "
            "to the input, so the map term cannot be optimized; use an interpreter that supports "
            "create_graph=True (grad, smoothgrad, ig, cam, gradcam, mask, rts, ensemble)"
        )
    logits = seen[-1] if seen else model(xg)
    dist = map_distance(maps, target_map, distance, pool)
    loss = smoothed_cross_entropy(logits, target, label_smoothing) + lam * dist
    if encoder is not None:
        loss = loss + encoder_weight * F.cross_entropy(encoder(xg), target, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), xg)
    return grad, logits.detach(), maps.detach(), dist.detach()


# ---------------------------------------------------------------------------- the attack


def _as_tuple(v: float | int | Sequence[Any]) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


@ATTACKS.register("adv2")
class ADV2(Attack):
    """ADV² (Zhang et al., USENIX Security 2020): targeted L∞ attack on a classifier *and* its
    interpreter; the adversarial map stays close to a target map (by default the benign one).

    Settings left as None come from :data:`PRESETS` for the interpreter's family (gradient
    maps; CAM-like forward maps; MASK) and ``preset`` ("imagenet": the authors' settings;
    "small": CPU settings for 8×8–32×32 images; "auto", the default: chosen by input size).

    Args:
        interpreter: an :class:`~underfire.interpreters.Interpreter` or a registered name.
        eps: L∞ radius ε (paper: 0.031).
        step_size: signed step (paper: 1/255).
        warm_steps: targeted PGD steps before the joint loss (0: start from x).
        steps: joint-loss steps, an int or one int per λ stage.
        lam: λ, a number or one value per stage ("stages") / the end points of a linear ramp
            ("linear").
        schedule: "stages" (constant λ per stage) or "linear" (λ interpolated over the steps).
        kappa: minimum target confidence p_t for a candidate to count as reached.
        label_smoothing: probability mass on t in ℓ_prd's soft label (1 = plain cross-entropy).
        distance: ℓ_int, "sse" (sum of squared map differences) or "mse" (mean).
        pool: average-pool both maps by this factor inside ℓ_int (the authors use 4 for GRAD
            at 224×224).
        check_every: for second-order interpreters, judge candidates on the true (unsmoothed)
            map every this many steps (others are judged on every step's own map).
        target_map: "benign" (g(x) for f's prediction on x), "class" (the map of a correctly
            classified ``reference`` image of class t) or a (N|1, 1, H, W) tensor in [0, 1].
        reference: (x, y) tensors or a dataset with ``.x``/``.y``, for ``target_map="class"``.
        tau: τ of the smooth ReLU backward.
        mask_unroll: unrolled MASK steps differentiated per iteration.
        mask_reset: re-run MASK from scratch every this many iterations.
        mask_lr: step size of the unrolled (plain gradient) mask steps (None: MASK's lr).
        encoder: an extra classifier whose prediction is pushed to t (RTS's encoder when it is a
            separate network); its cross-entropy enters with ``encoder_weight``.
        preset: the source of the unset settings: "imagenet", "small", or "auto" (at each
            call, "imagenet" for inputs of 128 px and more, else "small"; before any call
            the attributes show the "imagenet" values).
        seed: seeds the "random" target rule and the choice of reference images.

    After each call, :attr:`result` (an :class:`ADV2Result`) holds the per-sample record.
    """

    name = "adv2"
    iterative = True
    requires_target: ClassVar[bool] = True

    def __init__(
        self,
        interpreter: Interpreter | str,
        *,
        eps: float = 0.031,
        step_size: float = 1 / 255,
        warm_steps: int | None = None,
        steps: int | Sequence[int] | None = None,
        lam: float | Sequence[float] | None = None,
        schedule: Schedule | None = None,
        kappa: float | None = None,
        label_smoothing: float | None = None,
        distance: Distance | None = None,
        pool: int | None = None,
        check_every: int | None = None,
        target_map: str | torch.Tensor = "benign",
        reference: Any = None,
        tau: float = DEFAULT_TAU,
        mask_unroll: int = 2,
        mask_reset: int = 50,
        mask_lr: float | None = None,
        encoder: nn.Module | None = None,
        encoder_weight: float = 1.0,
        preset: Literal["auto", "imagenet", "small"] = "auto",
        seed: int | None = None,
    ) -> None:
        if isinstance(interpreter, str):
            interpreter = INTERPRETERS.create(interpreter)
        if not isinstance(interpreter, Interpreter):
            raise TypeError(
                f"interpreter must be an underfire Interpreter or a registered name "
                f"({', '.join(INTERPRETERS.names())}), got {type(interpreter).__name__}"
            )
        if preset != "auto" and preset not in PRESETS:
            raise ValueError(f"preset must be 'auto' or one of {tuple(PRESETS)}, got {preset!r}")
        self.interpreter = interpreter
        self.preset = preset
        self.norm = "linf"
        self.eps = check_eps(eps, "linf")
        self.step_size = check_positive(step_size, "step_size")
        self._given = {
            "warm_steps": warm_steps,
            "steps": steps,
            "lam": lam,
            "schedule": schedule,
            "kappa": kappa,
            "label_smoothing": label_smoothing,
            "distance": distance,
            "pool": pool,
            "check_every": check_every,
        }
        self._apply_preset("imagenet" if preset == "auto" else preset)
        if isinstance(target_map, str):
            if target_map not in ("benign", "class"):
                raise ValueError(
                    f"target_map must be 'benign', 'class' or a tensor of maps, got {target_map!r}"
                )
            if target_map == "class" and reference is None:
                raise ValueError(
                    "target_map='class' needs reference images: pass reference=(x_ref, y_ref) or a dataset"
                )
        elif not isinstance(target_map, torch.Tensor):
            raise TypeError(
                f"target_map must be 'benign', 'class' or a tensor, got {type(target_map).__name__}"
            )
        self.target_map = target_map
        self.reference = reference
        self.tau = check_positive(tau, "tau")
        self.mask_unroll = check_int(mask_unroll, "mask_unroll", minimum=1)
        self.mask_reset = check_int(mask_reset, "mask_reset", minimum=1)
        self.mask_lr = None if mask_lr is None else check_positive(mask_lr, "mask_lr")
        if encoder is not None and not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        self.encoder = encoder
        self.encoder_weight = check_positive(encoder_weight, "encoder_weight", allow_zero=True)
        self.seed = check_seed(seed)
        self.result: ADV2Result | None = None
        self._call_map: torch.Tensor | None = None

    # -- settings ----------------------------------------------------------------------

    def _apply_preset(self, preset: str) -> None:
        """Resolve the settings left unset from ``PRESETS[preset]`` (and validate them all)."""
        family = "mask" if any(isinstance(m, Mask) for m in _members(self.interpreter)) else None
        base = PRESETS[preset][family or _family(self.interpreter)]

        def pick(key: str) -> Any:
            value = self._given[key]
            return base[key] if value is None else value

        self.preset_ = preset
        self.warm_steps = check_int(pick("warm_steps"), "warm_steps", minimum=0)
        steps_t = tuple(check_int(s, "steps", minimum=0) for s in _as_tuple(pick("steps")))
        lam_t = tuple(check_positive(v, "lam", allow_zero=True) for v in _as_tuple(pick("lam")))
        self.schedule: Schedule = pick("schedule")
        if self.schedule not in ("stages", "linear"):
            raise ValueError(f"schedule must be 'stages' or 'linear', got {self.schedule!r}")
        if len(steps_t) > 1 and len(steps_t) != len(lam_t):
            raise ValueError(
                f"steps per stage {steps_t} and lam {lam_t} must have the same length "
                "(or give steps as one int)"
            )
        self.steps = steps_t if len(steps_t) > 1 else steps_t[0]
        self.lam = lam_t if len(lam_t) > 1 else lam_t[0]
        self.kappa = check_float(pick("kappa"), "kappa", low=0.0, high=1.0)
        self.label_smoothing = check_float(
            pick("label_smoothing"), "label_smoothing", low=0.0, high=1.0
        )
        self.distance: Distance = pick("distance")
        if self.distance not in ("sse", "mse"):
            raise ValueError(f"distance must be 'sse' or 'mse', got {self.distance!r}")
        self.pool = check_int(pick("pool"), "pool", minimum=1)
        self.check_every = check_int(pick("check_every"), "check_every", minimum=1)

    @classmethod
    def for_interpreter(
        cls, interpreter: Interpreter | str, *, image_size: int = 224, **overrides: Any
    ) -> ADV2:
        """ADV² with the preset that fits ``image_size`` ("imagenet" from 128 px, else "small"),
        fixed at construction (``preset="auto"`` decides at each call instead)."""
        preset = "imagenet" if image_size >= 128 else "small"
        return cls(interpreter, preset=overrides.pop("preset", preset), **overrides)

    def lambdas(self) -> list[float]:
        """λ at each joint step (length = total steps)."""
        lam = _as_tuple(self.lam)
        steps = _as_tuple(self.steps)
        total = sum(steps)
        if self.schedule == "linear":
            if len(lam) == 1:
                return [float(lam[0])] * total
            # piecewise linear through the given values, ending on the last one
            pos = torch.linspace(0, len(lam) - 1, total + 1, dtype=torch.float64)[1:]
            vals = torch.tensor(lam, dtype=torch.float64)
            lo = pos.floor().long().clamp(max=len(lam) - 2)
            frac = pos - lo
            return (vals[lo] * (1 - frac) + vals[lo + 1] * frac).tolist()
        if len(steps) == 1 and len(lam) > 1:
            per, rest = divmod(total, len(lam))
            steps = tuple(per + (i < rest) for i in range(len(lam)))
        out: list[float] = []
        for v, s in zip(lam, steps, strict=False):
            out += [float(v)] * s
        return out

    def _settings(self) -> dict[str, Any]:
        s = super()._settings()
        s.pop("result", None)
        if isinstance(s.get("target_map"), torch.Tensor):
            s["target_map"] = "tensor"
        if s.get("reference") is not None:
            s["reference"] = "given"
        s["interpreter"] = self.interpreter.name
        return s

    # -- the call ----------------------------------------------------------------------

    def __call__(  # type: ignore[override]  # the bound form: accept_bound wraps it (base)
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | str | None = None,
        *,
        target_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Craft ADV² examples; ``target`` is required (tensor of classes or a rule name).

        Args:
            model: classifier taking [0, 1] images, returning logits.
            x: (N, C, H, W) images in [0, 1]; not modified.
            y: (N,) true labels.
            target: (N,) target classes or "next" / "random" / "least-likely".
            target_map: optional (N|1, 1, H, W) maps in [0, 1] overriding the constructor's.

        Returns:
            (N, C, H, W) x_adv in the ε-ball and [0, 1]; :attr:`result` holds the record.
        """
        self.result = None
        self._call_map = target_map
        try:
            return super().__call__(model, x, y, target)
        finally:
            self._call_map = None

    def _check_call(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | str | None
    ) -> torch.Tensor | str | None:
        if target is None:
            raise ValueError(
                "ADV² is a targeted attack: pass target= as a tensor of classes or a rule "
                "('next', 'random', 'least-likely')"
            )
        target = super()._check_call(model, x, y, target)
        if self.preset == "auto":  # settings by input size: the authors' from 128 px up
            self._apply_preset("imagenet" if min(x.shape[-2:]) >= 128 else "small")
        if self.encoder is not None:
            check_same_device(self.encoder, x)
        maps = self._call_map if self._call_map is not None else self.target_map
        if isinstance(maps, torch.Tensor):
            self._check_maps(maps, x)
        return target

    @staticmethod
    def _check_maps(maps: torch.Tensor, x: torch.Tensor) -> None:
        n, _, h, w = x.shape
        if maps.dim() != 4 or maps.shape[1] != 1 or maps.shape[0] not in (1, n):
            raise ValueError(
                f"target_map must have shape ({n} or 1, 1, {h}, {w}), got {tuple(maps.shape)}"
            )
        if tuple(maps.shape[-2:]) != (h, w):
            raise ValueError(
                f"target_map is {tuple(maps.shape[-2:])} but the images are {(h, w)}; "
                "resize it with underfire.interpreters.resize_maps"
            )
        if not bool(torch.isfinite(maps).all()) or maps.min() < 0 or maps.max() > 1:
            raise ValueError("target_map must hold finite values in [0, 1] (normalized maps)")
        if maps.device != x.device:
            raise ValueError(f"target_map is on {maps.device} but x is on {x.device}")

    def _target_maps(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        given = self._call_map if self._call_map is not None else self.target_map
        if isinstance(given, torch.Tensor):
            return given.to(x.dtype).expand(x.shape[0], -1, -1, -1)
        if given == "benign":
            with torch.no_grad():
                pred = model(x).argmax(1)
            return self.interpreter(model, x, pred)
        return self._class_maps(model, x, t)

    def _class_maps(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ref = self.reference
        xr, yr = (ref.x, ref.y) if hasattr(ref, "x") else ref
        xr, yr = xr.to(x.device, x.dtype), yr.to(x.device).long()
        if tuple(xr.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"reference images are {tuple(xr.shape[1:])}, the inputs {tuple(x.shape[1:])}"
            )
        gen = torch.Generator().manual_seed(self.seed or 0)
        order = torch.randperm(xr.shape[0], generator=gen).to(x.device)
        chosen = torch.empty_like(t)
        for c in t.unique().tolist():
            idx = order[yr[order] == c]
            found = None
            for start in range(0, idx.numel(), 256):
                part = idx[start : start + 256]
                with torch.no_grad():
                    ok = model(xr[part]).argmax(1) == c
                if bool(ok.any()):
                    found = part[ok.nonzero()[0, 0]]
                    break
            if found is None:
                raise ValueError(
                    f"target_map='class': no reference image of class {c} is classified as {c}; "
                    "pass a larger reference set"
                )
            chosen[t == c] = found
        return self.interpreter(model, xr[chosen], t)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        assert target is not None
        t = target
        encoder_guard = (
            model_state(self.encoder) if self.encoder is not None else contextlib.nullcontext()
        )
        with encoder_guard:
            return self._run(model, x, y, t)

    def _run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        eps, alpha = float(self.eps or 0.0), self.step_size
        m_t = self._target_maps(model, x, t).detach()
        if self.warm_steps > 0 and eps > 0:
            x_adv = PGD(eps=eps, step_size=alpha, steps=self.warm_steps, random_start=False)(
                model, x, y, target=t
            )
        else:
            x_adv = x.clone()
        ball = LINF.ball(x, eps)  # the ε-box ∩ [0, 1]
        n = x.shape[0]
        best = x_adv.clone()
        best_key = torch.full((n, 2), math.inf, device=x.device, dtype=torch.float64)
        best_dist = torch.full((n,), math.inf, device=x.device, dtype=x.dtype)
        masks = _MaskState(self.mask_unroll, self.mask_reset, self.mask_lr)
        smooth = _needs_smoothing(self.interpreter)

        def consider(xc: torch.Tensor, logits: torch.Tensor, dist: torch.Tensor) -> None:
            prob = logits.float().softmax(1).gather(1, t[:, None]).squeeze(1).to(torch.float64)
            hit = logits.argmax(1) == t
            tier = torch.where(hit & (prob >= self.kappa), 0.0, torch.where(hit, 1.0, 2.0))
            score = torch.where(tier < 2, dist.to(torch.float64), -prob)
            key = torch.stack([tier.to(torch.float64), score], 1)
            better = (key[:, 0] < best_key[:, 0]) | (
                (key[:, 0] == best_key[:, 0]) & (key[:, 1] < best_key[:, 1])
            )
            if bool(better.any()):
                best[better] = xc[better]
                best_key[better] = key[better]
                best_dist[better] = dist[better]

        def judge(xc: torch.Tensor) -> None:
            with torch.no_grad():
                logits = model(xc)
            maps = _judge_map(self.interpreter, model, xc, t)
            consider(xc, logits, map_distance(maps, m_t, self.distance, self.pool))

        lams = self.lambdas() if eps > 0 else []
        for i, lam in enumerate(lams):
            masks.iteration = i
            with attack_patches(model, smooth, self.tau):
                grad, logits, _, dist = joint_loss_gradient(
                    model,
                    self.interpreter,
                    x_adv,
                    t,
                    m_t,
                    lam,
                    label_smoothing=self.label_smoothing,
                    distance=self.distance,
                    pool=self.pool,
                    encoder=self.encoder if self.encoder_weight > 0 else None,
                    encoder_weight=self.encoder_weight,
                    masks=masks,
                )
            if not smooth:
                consider(x_adv, logits, dist)  # a forward map: the step's map is the true one
            elif i % self.check_every == 0:
                judge(x_adv)
            x_adv = ball.project_(x_adv - alpha * LINF.direction(grad))
        judge(x_adv)
        self.result = self._record(model, best, t, m_t, best_dist)
        return best

    def _record(
        self,
        model: nn.Module,
        x_adv: torch.Tensor,
        t: torch.Tensor,
        m_t: torch.Tensor,
        dist: torch.Tensor,
    ) -> ADV2Result:
        with torch.no_grad():
            logits = model(x_adv)
        maps = self.interpreter(model, x_adv, t)  # the true map, MASK re-run from scratch
        pred = logits.argmax(1)
        return ADV2Result(
            target=t.clone(),
            prediction=pred,
            success=pred == t,
            confidence=logits.float().softmax(1).gather(1, t[:, None]).squeeze(1),
            l1=l1_distance(maps, m_t),
            iou=topk_iou(maps, m_t),
            distance=dist,
        )
