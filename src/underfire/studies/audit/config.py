"""What an audit runs (:class:`AuditConfig`) and the constants its parts and report share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from underfire.attacks import ATTACKS
from underfire.core.validation import check_eps, check_float, check_int
from underfire.interpreters import INTERPRETERS

__all__ = ["AuditConfig", "configure", "default_eps"]

#: Attacks whose result is a minimal perturbation, not bounded by an ε (CW, DDN, JSMA).
MINIMAL = tuple(n for n in ATTACKS.names() if getattr(ATTACKS.get(n), "minimal", False))

#: Quadrature points of Integrated Gradients inside ADV² (the maps themselves keep 50). On 16
#: MNIST images (Ross CNN, one thread) 16 points judged every step took 88 s, map L1 0.0330 to
#: the benign 50-point map (PGD's: 0.060); 6 points judged every 5 steps 28 s, L1 0.0355.
ADV2_IG_STEPS = 6

#: ADV² in the audit judges its iterate on the interpreter's true (unsmoothed) map every this
#: many steps at least (presets that judge less often keep theirs). Same images: through Grad
#: 9.0 s → 6.5 s, L1 0.1219 → 0.1232; Grad-CAM 7.2 s → 5.1 s, L1 0.0992 both (docs/audit.md).
ADV2_CHECK_EVERY = 5

#: Multiply-adds of one image's forward pass up to which the map attacks take all images in
#: one batch (a Ross CNN on MNIST: 1.4e7; a CIFAR-10 ResNet-20: 4e7; ResNet-50 at 224 px:
#: 4.1e9 runs in batches of 4).
LIGHT_MODEL_MACS = 1e8

#: Below this success rate on correctly classified images the report warns that a
#: minimal-perturbation attack is too weak to describe the model.
MINIMAL_SUCCESS = 0.9

NORM_NAMES = {"l0": "L0 (values changed)", "l2": "L2", "linf": "L∞"}

#: Interpreters that read a target layer's feature map.
LAYERED = ("cam", "gradcam")

#: A map is constant when max − min ≤ CONSTANT_RTOL · max |map| (or it is all zero). Relative,
#: because float32 rounding leaves a span of ~1e-7 · max on a map that is constant in exact
#: arithmetic (e.g. Grad-CAM on a 1×1 feature map), and min–max normalization would turn that
#: rounding into speckle; maps of real content span a sizeable fraction of their maximum.
CONSTANT_RTOL = 1e-4

#: ``strength``: "fast" runs ``attacks`` as given; "standard" adds AutoAttack (Croce & Hein
#: 2020), the evaluation robustness results are expected to come from.
STRENGTHS = ("fast", "standard")


@dataclass(frozen=True)
class AuditConfig:
    """What the audit runs. Every field is data (saved as config.json next to the results).

    Attributes:
        attacks: registered attack names; ε-bounded ones are swept over ``eps``.
        interpreters: registered interpreter names whose maps are compared under attack.
        eps: L∞ radii (None: by input size, see :func:`default_eps`); ε = 0 is always added.
        interpreter_options: keyword arguments per interpreter name, e.g.
            ``{"gradcam": {"relu": False}}``.
        target_layer: module name CAM / Grad-CAM read (e.g. ``"net.layer4"``); None: the
            model's declared ``target_layer``, else the last module with a spatial 4-D output
            (:func:`underfire.interpreters.cam.find_target_layer`).
        n: at most this many samples are audited (the first n).
        n_maps: images used for the explanation sections (maps are costlier).
        batch_size: attack batch size.
        pgd_steps: steps of PGD (and BIM) in the sweep.
        cw_steps: optimizer steps of CW per binary-search step.
        ddn_steps: steps of DDN (the default minimal-L2 attack: lower median L2 than the
            audit's CW at a third of its gradient steps, docs/audit.md).
        surrogate: train a surrogate on the model's labels and report transfer.
        surrogate_epochs: its training epochs.
        time_budget: seconds; parts not started within it are skipped and reported so.
        seed: seeds attacks' random starts and the surrogate.
        strength: "fast" (``attacks`` as given) or "standard" (AutoAttack added to them).
        exhaustive: run every attack on every sample at every ε, so each attack's curve is
            its own on all samples. False (the default): only what is still open is
            attacked (fooled samples leave the batch, ε ascending, the bounded attacks
            cheapest first on what the earlier ones left robust; DDN, CW and JSMA on the
            correctly classified samples, since their success and norms are their own
            statistics); each bounded attack's curve is then cumulative (it and the
            bounded attacks before it), and the worst case is never higher than the
            exhaustive one.
    """

    attacks: tuple[str, ...] = ("fgsm", "pgd", "ddn")
    interpreters: tuple[str, ...] = ("grad", "ig", "gradcam")
    eps: tuple[float, ...] | None = None
    interpreter_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_layer: str | None = None
    n: int = 1000
    n_maps: int = 16
    batch_size: int = 128
    pgd_steps: int = 20
    cw_steps: int = 100
    ddn_steps: int = 100
    surrogate: bool = True
    surrogate_epochs: int = 5
    time_budget: float | None = None
    seed: int = 0
    strength: str = "fast"
    exhaustive: bool = False

    def __post_init__(self) -> None:
        if self.strength not in STRENGTHS:
            raise ValueError(f"strength must be one of {STRENGTHS}, got {self.strength!r}")
        if self.strength == "standard" and "autoattack" not in self.attacks:
            object.__setattr__(self, "attacks", (*self.attacks, "autoattack"))
        for name in self.attacks:
            ATTACKS.get(name)
        for name in self.interpreters:
            INTERPRETERS.get(name)
        for name, options in self.interpreter_options.items():
            if name not in self.interpreters:
                raise ValueError(
                    f"interpreter_options names {name!r}, which is not among the audited "
                    f"interpreters {', '.join(self.interpreters)}"
                )
            if not isinstance(options, dict):
                raise TypeError(f"interpreter_options[{name!r}] must be a dict of keywords")
        if self.target_layer is not None and (
            not isinstance(self.target_layer, str) or not self.target_layer
        ):
            raise TypeError(
                f"target_layer must be None or a module name, got {self.target_layer!r} "
                "(underfire.audit(model, ..., target_layer=module) takes the module itself)"
            )
        if not self.attacks:
            raise ValueError("an audit needs at least one attack, e.g. attacks=('fgsm', 'pgd')")
        if self.eps is not None:
            for e in self.eps:
                check_eps(e)
        for name in (
            "n",
            "n_maps",
            "batch_size",
            "pgd_steps",
            "cw_steps",
            "ddn_steps",
            "surrogate_epochs",
        ):
            check_int(getattr(self, name), name, minimum=1)
        if self.time_budget is not None:
            check_float(self.time_budget, "time_budget", low=0, low_inclusive=False)
        check_int(self.seed, "seed", minimum=0)
        if not isinstance(self.exhaustive, bool):
            raise TypeError(f"exhaustive must be True or False, got {self.exhaustive!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_eps(x: torch.Tensor) -> tuple[float, ...]:
    """Conventional L∞ radii: MNIST-like grayscale digits use 0.1–0.3, natural colour images
    2/255–16/255 (Madry et al. 2018; Croce & Hein 2020)."""
    if x.shape[1] == 1:
        return (0.05, 0.1, 0.2, 0.3)
    return (2 / 255, 4 / 255, 8 / 255, 16 / 255)


#: The fields a part's result depends on: all but the time budget (which only decides
#: whether a part runs, not what it computes).
RESULT_FIELDS = tuple(f for f in AuditConfig.__dataclass_fields__ if f != "time_budget")


def configure(**options: Any) -> AuditConfig:
    """An :class:`AuditConfig` from keyword options (lists become tuples)."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return AuditConfig(**fields)
