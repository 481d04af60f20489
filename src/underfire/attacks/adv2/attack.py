"""The ADV² attack class (Zhang et al., USENIX Security 2020); see :mod:`underfire.attacks.adv2`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from underfire.attacks.adv2.losses import (
    attack_patches,
    joint_loss_gradient,
    judge_map,
    map_distance,
)
from underfire.attacks.adv2.presets import (
    PRESETS,
    Distance,
    Keep,
    Schedule,
    as_tuple,
    family,
    lambdas,
    preset_for_size,
    random_label_masses,
    stage_fractions,
)
from underfire.attacks.adv2.result import ADV2Result
from underfire.attacks.base import ATTACKS, Attack
from underfire.attacks.pgd import PGD
from underfire.core.autograd.smooth_relu import DEFAULT_TAU
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
from underfire.interpreters.base import INTERPRETERS, Interpreter, MapState
from underfire.metrics import l1_distance, topk_iou

__all__ = ["ADV2"]


@ATTACKS.register("adv2")
class ADV2(Attack):
    """ADV² (Zhang et al., USENIX Security 2020): targeted L∞ attack on a classifier *and* its
    interpreter; the adversarial map stays close to a target map (by default the benign one).

    Settings left as None come from :data:`PRESETS` for the interpreter's family (gradient
    maps; CAM-like forward maps; MASK) and ``preset`` ("imagenet" and "cifar10": the authors'
    settings for those data; "small": CPU settings for 8×8 and 28×28 digits; "auto", the
    default: chosen by input size, :func:`preset_for_size`).

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
        keep: which iterate is returned: "best" (the closest map among the judged iterates
            that reach t with p_t ≥ κ: the authors' GRAD) or "last" (the last iterate, if it
            reaches t with p_t ≥ κ: the authors' CAM and RTS). Either way, when no iterate
            meets the goal the best iterate that reaches t is returned, else the one closest to
            it (highest p_t), so ADV² never gives up a target its warm start reached.
        label_smoothing: probability mass on t in ℓ_prd's soft label (1 = plain cross-entropy),
            or "random" (the authors' CIFAR-10 GRAD attack): at step j of a λ stage of n steps,
            a mass drawn per sample from U(0.95 + 0.04·j/n, 1), seeded by ``seed``.
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
        preset: the source of the unset settings: "imagenet", "cifar10", "small", or "auto"
            (at each call by input size: "imagenet" from 128 px, "cifar10" from 32 px, else
            "small"; before any call the attributes show the "imagenet" values).
        seed: seeds the "random" target rule, the choice of reference images and the random
            soft label.

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
        keep: Keep | None = None,
        label_smoothing: float | Literal["random"] | None = None,
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
        preset: Literal["auto", "imagenet", "cifar10", "small"] = "auto",
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
            "keep": keep,
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
        base = PRESETS[preset][family(self.interpreter)]

        def pick(key: str) -> Any:
            value = self._given[key]
            return base[key] if value is None else value

        self.preset_ = preset
        self.warm_steps = check_int(pick("warm_steps"), "warm_steps", minimum=0)
        steps_t = tuple(check_int(s, "steps", minimum=0) for s in as_tuple(pick("steps")))
        lam_t = tuple(check_positive(v, "lam", allow_zero=True) for v in as_tuple(pick("lam")))
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
        self.keep: Keep = pick("keep")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {self.keep!r}")
        smoothing = pick("label_smoothing")
        if isinstance(smoothing, str) and smoothing != "random":
            raise ValueError(
                f"label_smoothing must be a mass in [0, 1] or 'random' (the authors' CIFAR-10 "
                f"soft label), got {smoothing!r}"
            )
        self.label_smoothing: float | str = (
            smoothing
            if smoothing == "random"
            else check_float(smoothing, "label_smoothing", low=0.0, high=1.0)
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
        """ADV² with the preset that fits ``image_size`` (:func:`preset_for_size`), fixed at
        construction (``preset="auto"`` decides at each call instead)."""
        preset = preset_for_size(image_size)
        return cls(interpreter, preset=overrides.pop("preset", preset), **overrides)

    def lambdas(self) -> list[float]:
        """λ at each joint step (length = total steps)."""
        return lambdas(self.lam, self.steps, self.schedule)

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

    #: ``attack(model, x, y, target, target_map=maps)``: (N|1, 1, H, W) maps in [0, 1] that
    #: override the constructor's ``target_map`` for this call
    call_options: ClassVar[tuple[str, ...]] = ("target_map",)

    @contextlib.contextmanager
    def _call_scope(self, target_map: torch.Tensor | None = None) -> Iterator[None]:  # type: ignore[override]
        """Per call: :attr:`result` cleared, the call's ``target_map`` in force."""
        self.result = None
        self._call_map = target_map
        try:
            yield
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
            self._apply_preset(preset_for_size(min(x.shape[-2:])))
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
        state = MapState(self.mask_unroll, self.mask_reset, self.mask_lr)
        smooth = self.interpreter.second_order

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
            maps = judge_map(self.interpreter, model, xc, t)
            consider(xc, logits, map_distance(maps, m_t, self.distance, self.pool))

        lams = self.lambdas() if eps > 0 else []
        masses = self._label_masses(len(lams), n, x)
        for i, lam in enumerate(lams):
            state.step = i
            with attack_patches(model, smooth, self.tau):
                grad, logits, _, dist = joint_loss_gradient(
                    model,
                    self.interpreter,
                    x_adv,
                    t,
                    m_t,
                    lam,
                    label_smoothing=masses[i],
                    distance=self.distance,
                    pool=self.pool,
                    encoder=self.encoder if self.encoder_weight > 0 else None,
                    encoder_weight=self.encoder_weight,
                    state=state,
                )
            if not smooth:
                consider(x_adv, logits, dist)  # a forward map: the step's map is the true one
            elif i % self.check_every == 0:
                judge(x_adv)
            x_adv = ball.project_(x_adv - alpha * LINF.direction(grad))
        judge(x_adv)
        if self.keep == "last":
            self._keep_last(model, x_adv, t, m_t, best, best_dist)
        self.result = self._record(model, best, t, m_t, best_dist)
        return best

    def _label_masses(self, steps: int, n: int, x: torch.Tensor) -> Sequence[float | torch.Tensor]:
        """ℓ_prd's mass on t at each joint step: the fixed ``label_smoothing``, or per sample
        the authors' random soft label (drawn on the CPU from ``seed``, so the draws do not
        depend on the device)."""
        if self.label_smoothing != "random":
            return [float(self.label_smoothing)] * steps
        gen = torch.Generator().manual_seed(self.seed or 0)
        fractions = stage_fractions(self.lam, self.steps, self.schedule)[:steps]
        return list(random_label_masses(fractions, n, gen).to(x.device, x.dtype).unbind(0))

    def _keep_last(
        self,
        model: nn.Module,
        x_last: torch.Tensor,
        t: torch.Tensor,
        m_t: torch.Tensor,
        best: torch.Tensor,
        best_dist: torch.Tensor,
    ) -> None:
        """Replace ``best`` by the last iterate wherever it reaches t with p_t ≥ κ (in place)."""
        with torch.no_grad():
            logits = model(x_last)
        prob = logits.float().softmax(1).gather(1, t[:, None]).squeeze(1)
        ok = (logits.argmax(1) == t) & (prob >= self.kappa)
        if bool(ok.any()):
            maps = judge_map(self.interpreter, model, x_last[ok], t[ok])
            best[ok] = x_last[ok]
            best_dist[ok] = map_distance(maps, m_t[ok], self.distance, self.pool).to(best_dist)

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
