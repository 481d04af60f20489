"""`underfire.audit(model, data)` (this module: `underfire.auditing`): how attackable is a classifier,
and how attackable are its explanations?

One call (or ``underfire audit``) runs, on the user's own model and data:

* clean accuracy;
* white-box robust accuracy vs ε for each attack, with an AutoAttack-style worst case: a
  sample counts as robust at ε only if *every* attack failed on it (Croce & Hein 2020 report
  the per-sample minimum over an ensemble of attacks the same way);
* minimal-perturbation attacks (CW, JSMA): success and median L0/L2/L∞ perturbation norms;
  their examples also count towards the worst case at ε when their L∞ norm is ≤ ε;
* transfer: the same attacks crafted on a surrogate trained here on the model's own labels;
* gradient-masking soundness checks with verdicts (Carlini et al. 2019, "On Evaluating
  Adversarial Robustness"): iterative not weaker than single-step, accuracy non-increasing
  in ε, white-box not weaker than transfer, an unbounded attack reaching ~0% accuracy,
  healthy input gradients;
* explanations: each interpreter's maps on benign vs PGD examples (and ADV² where it is
  available), with L1 distance and top-k IoU — the stability of the explanation under
  attack; constant maps are reported and left out of those statistics;
* the per-layer diagnosis, where :mod:`underfire.diagnosis` is available.

Every part is saved under ``out/parts/`` as it finishes, so a killed audit run again with
the same arguments continues where it stopped; ``n`` and ``time_budget`` bound the cost.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.attacks import ATTACKS, AttackWarning
from underfire.attacks.base import Attack
from underfire.core import io as _io
from underfire.core.state import model_state
from underfire.core.validation import check_eps, check_float, check_int
from underfire.diagnosis import readable_rows
from underfire.interpreters import INTERPRETERS, Interpreter, normalize_maps
from underfire.interpreters.cam import capture_layer, find_target_layer
from underfire.metrics import l1_distance, topk_iou
from underfire.plotting import new_figure, prediction_titles, save_figure
from underfire.report import Report
from underfire.robustness import collect_data

__all__ = ["AuditConfig", "audit", "collect_data", "default_eps"]

#: Attacks whose result is a minimal perturbation, not bounded by an ε.
MINIMAL = ("cw", "jsma")

#: Quadrature points of Integrated Gradients inside ADV² (the maps themselves keep 50).
ADV2_IG_STEPS = 16

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
        surrogate: train a surrogate on the model's labels and report transfer.
        surrogate_epochs: its training epochs.
        time_budget: seconds; parts not started within it are skipped and reported so.
        seed: seeds attacks' random starts and the surrogate.
    """

    attacks: tuple[str, ...] = ("fgsm", "pgd", "cw")
    interpreters: tuple[str, ...] = ("grad", "ig", "gradcam")
    eps: tuple[float, ...] | None = None
    interpreter_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_layer: str | None = None
    n: int = 1000
    n_maps: int = 16
    batch_size: int = 128
    pgd_steps: int = 20
    cw_steps: int = 100
    surrogate: bool = True
    surrogate_epochs: int = 5
    time_budget: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
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
                f"target_layer must be None or a module name, got {self.target_layer!r}"
            )
        if not self.attacks:
            raise ValueError("an audit needs at least one attack, e.g. attacks=('fgsm', 'pgd')")
        if self.eps is not None:
            for e in self.eps:
                check_eps(e)
        for name in ("n", "n_maps", "batch_size", "pgd_steps", "cw_steps", "surrogate_epochs"):
            check_int(getattr(self, name), name, minimum=1)
        if self.time_budget is not None:
            check_float(self.time_budget, "time_budget", low=0, low_inclusive=False)
        check_int(self.seed, "seed", minimum=0)


def default_eps(x: torch.Tensor) -> tuple[float, ...]:
    """Conventional L∞ radii: MNIST-like grayscale digits use 0.1–0.3, natural colour images
    2/255–16/255 (Madry et al. 2018; Croce & Hein 2020)."""
    if x.shape[1] == 1:
        return (0.05, 0.1, 0.2, 0.3)
    return (2 / 255, 4 / 255, 8 / 255, 16 / 255)


# ------------------------------------------------------------------------------ the audit


@dataclass
class _Run:
    """State shared by the parts of one audit."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    config: AuditConfig
    eps: list[float]
    out: Path | None
    progress: bool
    started: float = field(default_factory=time.perf_counter)
    results: dict[str, Any] = field(default_factory=dict)
    #: interpreter name → its target layer {"name", "how", "size"} (CAM methods only)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def over_budget(self) -> bool:
        budget = self.config.time_budget
        return budget is not None and time.perf_counter() - self.started > budget

    def batches(
        self, what: str, n: int | None = None, size: int | None = None
    ) -> Iterable[tuple[int, int]]:
        total = self.x.shape[0] if n is None else min(n, self.x.shape[0])
        size = size or self.config.batch_size
        spans = [(i, min(i + size, total)) for i in range(0, total, size)]
        if not self.progress:
            return spans
        from tqdm import tqdm

        return tqdm(spans, desc=what, unit="batch", leave=False)


def _part(
    run: _Run, name: str, compute: Callable[[_Run], dict[str, Any]], *, always: bool = False
) -> dict[str, Any] | None:
    """Load a finished part from ``out/parts`` or compute and save it (None: over budget)."""
    path = run.out / "parts" / f"{name}.json" if run.out is not None else None
    if path is not None and path.exists():
        result = json.loads(path.read_text())
        run.results.setdefault("resumed", []).append(name)
    elif run.over_budget() and not always:
        run.results.setdefault("skipped", []).append(name)
        return None
    else:
        t0 = time.perf_counter()
        result = compute(run)
        result["seconds"] = round(time.perf_counter() - t0, 2)
        if path is not None:
            _io.write_json(path, result)
    run.results[name] = result
    return result


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def _build_interpreter(run: _Run, name: str) -> Interpreter:
    kwargs = dict(run.config.interpreter_options.get(name, {}))
    if name in run.layers:
        kwargs["target_layer"] = run.layers[name]["name"]
    return INTERPRETERS.create(name, **kwargs)


def _prepare_interpreters(run: _Run) -> None:
    """Choose the CAM methods' target layers and run every interpreter once on one image, so
    that an interpreter that cannot run on this model stops the audit before the attacks
    (which take most of its time), with one message saying what to pass."""
    from underfire.interpreters.cam import declared_target_layer
    from underfire.models import get_layer

    x, y = run.x[:1].to(run.device), run.y[:1].to(run.device)
    for name in run.config.interpreters:
        hint = ""
        try:
            if name in LAYERED:
                hint = (
                    "; name the layer with target_layer='<module name>' (CLI: --target-layer), "
                    "or leave this interpreter out"
                )
                given = run.config.interpreter_options.get(name, {}).get("target_layer")
                given = given or run.config.target_layer
                layer = given or find_target_layer(run.model, x)
                if given:
                    how = "given"
                elif declared_target_layer(run.model):
                    how = "declared by the model"
                else:
                    how = "found automatically: the last module with a spatial 4-D output"
                with torch.no_grad(), capture_layer(get_layer(run.model, layer)) as outs:
                    run.model(x)
                size = [int(v) for v in outs[-1].shape[2:]]
                run.layers[name] = {"name": layer, "how": how, "size": size}
            _build_interpreter(run, name)(run.model, x, y)
        except (ValueError, TypeError, KeyError, RuntimeError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ValueError(
                f"interpreter {name!r} cannot run on this model ({message}){hint}; "
                "the audit stopped before any attack ran"
            ) from err
        info = run.layers.get(name)
        if info is not None and info["size"] == [1, 1]:
            note = (
                f"{name}: target layer {info['name']} is 1×1 at this input size, so its maps "
                "are constant and carry no spatial information; choose an earlier layer "
                "(target_layer / --target-layer) for spatial maps"
            )
            warnings.warn(note, stacklevel=3)
            notes = run.results.setdefault("notes", [])
            if note not in notes:
                notes.append(note)
    run.results["layers"] = run.layers


def _build_attack(name: str, config: AuditConfig, eps: float) -> Attack:
    kwargs: dict[str, Any] = {}
    if name in ("pgd", "bim"):
        kwargs = {"eps": eps, "steps": config.pgd_steps}
        if name == "pgd":
            kwargs["seed"] = config.seed
    elif name == "cw":
        # CW's paper runs 10^4 Adam steps at lr 0.01; with ~10^2 steps that lr cannot move
        # saturated pixels (tanh space), and CW flipped 8% of MNIST images (const 0.1 to 10
        # alike). lr 0.05, const 1, 5 × 100 steps flipped 100% of 50 images, median L2 1.17,
        # 1 s/image on the 2-core machine (lr 0.1 × 50 steps: 100%, but L2 1.58; docs/audit.md)
        kwargs = {"steps": config.cw_steps, "binary_search_steps": 5, "const": 1.0, "lr": 0.05}
    elif name not in MINIMAL and "eps" in _init_args(name):
        kwargs = {"eps": eps}
    return ATTACKS.create(name, **kwargs)


def _init_args(name: str) -> set[str]:
    import inspect

    return set(inspect.signature(ATTACKS.get(name)).parameters)


def _clean(run: _Run) -> dict[str, Any]:
    correct = torch.cat(
        [
            (_predict(run.model, run.x[a:b].to(run.device)).cpu() == run.y[a:b])
            for a, b in run.batches("clean")
        ]
    )
    return {
        "accuracy": correct.double().mean().item(),
        "correct": correct.tolist(),
        "n": len(correct),
    }


def _bounded_attack(run: _Run, name: str, source: nn.Module) -> dict[str, Any]:
    """Per-sample correctness of ``run.model`` on examples crafted on ``source`` at each ε."""
    attack = _build_attack(name, run.config, max(run.eps))
    correct: dict[float, list[torch.Tensor]] = {e: [] for e in run.eps}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AttackWarning)
        for a, b in run.batches(f"{name} ε-sweep"):
            xb, yb = run.x[a:b].to(run.device), run.y[a:b].to(run.device)
            for e, x_adv in zip(run.eps, attack.sweep(source, xb, yb, run.eps), strict=True):
                correct[e].append((_predict(run.model, x_adv) == yb).cpu())
    per_eps = {e: torch.cat(c) for e, c in correct.items()}
    return {
        "eps": run.eps,
        "accuracy": [per_eps[e].double().mean().item() for e in run.eps],
        "correct": [per_eps[e].tolist() for e in run.eps],
        "warnings": sorted({f"{type(w.message).__name__}: {w.message}" for w in caught})[:5],
    }


def _bounded_on_model(run: _Run, name: str) -> dict[str, Any]:
    """White-box: examples crafted on the audited model itself."""
    return _bounded_attack(run, name, run.model)


def _minimal_attack(run: _Run, name: str) -> dict[str, Any]:
    """Success and perturbation norms of a minimal-perturbation attack (CW, JSMA)."""
    attack = _build_attack(name, run.config, 0.0)
    clean = torch.tensor(run.results["clean"]["correct"])
    success, l0, l2, linf = [], [], [], []
    # small batches: these attacks are slow, and the progress bar's ETA needs steps
    for a, b in run.batches(name, size=min(32, run.config.batch_size)):
        xb, yb = run.x[a:b].to(run.device), run.y[a:b].to(run.device)
        x_adv = attack(run.model, xb, yb)
        delta = (x_adv - xb).flatten(1).cpu()
        success.append((_predict(run.model, x_adv) != yb).cpu())
        l0.append((delta.abs() > 1e-6).sum(1).float())
        l2.append(delta.norm(dim=1))
        linf.append(delta.abs().amax(1))
    ok = torch.cat(success)
    norms = {"l0": torch.cat(l0), "l2": torch.cat(l2), "linf": torch.cat(linf)}
    # an image the model already gets wrong "succeeds" with no perturbation: success and the
    # medians are over the correctly classified images only
    flipped = ok & clean

    def median(v: torch.Tensor) -> float | None:
        return v[flipped].median().item() if bool(flipped.any()) else None

    return {
        "success_rate": flipped.double().sum().item() / max(int(clean.sum()), 1),
        "n_right": int(clean.sum()),
        "success": ok.tolist(),
        "median": {k: median(v) for k, v in norms.items()},
        "linf": norms["linf"].tolist(),
        # robust at ε unless the attack succeeded within the ε-ball
        "correct": [
            [
                not (s and d <= e + 1e-7)
                for s, d in zip(ok.tolist(), norms["linf"].tolist(), strict=True)
            ]
            for e in run.eps
        ],
    }


def _worst_case(run: _Run, clean: list[bool]) -> dict[str, Any]:
    rows = [
        run.results[f"attack-{a}"]["correct"]
        for a in run.config.attacks
        if f"attack-{a}" in run.results
    ]
    acc = []
    for i, _ in enumerate(run.eps):
        robust = torch.tensor(clean)
        for r in rows:
            robust &= torch.tensor(r[i])
        acc.append(robust.double().mean().item())
    return {
        "eps": run.eps,
        "accuracy": acc,
        "attacks": [a for a in run.config.attacks if f"attack-{a}" in run.results],
    }


def _train_surrogate(run: _Run, train: torch.Tensor) -> nn.Module:
    """A Ross CNN (any square input) trained on the audited model's own labels of the
    images ``run.x[train]``."""
    from underfire.models import create_model
    from underfire.train import TrainConfig, Trainer

    c, h, w = run.x.shape[1:]
    if h != w:
        raise ValueError("the surrogate needs square images")
    k = int(run.model(run.x[:1].to(run.device)).shape[1])
    surrogate = create_model("ross-cnn", in_channels=c, input_size=h, num_classes=k, hidden=256)
    labels = torch.cat(
        [_predict(run.model, run.x[a:b].to(run.device)).cpu() for a, b in run.batches("labels")]
    )
    torch.manual_seed(run.config.seed)
    trainer = Trainer(
        surrogate,
        config=TrainConfig(epochs=run.config.surrogate_epochs, batch_size=64, seed=run.config.seed),
        device=run.device,
        progress=run.progress,
    )
    from underfire.data import DatasetInfo, ImageDataset

    info = DatasetInfo(
        name="audit-surrogate",
        shape=(c, h, w),
        num_classes=k,
        classes=tuple(str(i) for i in range(k)),
        description="the audited images with the audited model's labels",
    )
    trainer.fit(ImageDataset(run.x[train], labels[train], info, "train"))
    return surrogate.eval()


def _soundness(run: _Run) -> list[dict[str, Any]]:
    """Verdicts of the gradient-masking checks, each with its evidence."""
    checks: list[dict[str, Any]] = []
    res = run.results
    bounded = [a for a in run.config.attacks if a not in MINIMAL and f"attack-{a}" in res]
    for a in bounded:
        acc = res[f"attack-{a}"]["accuracy"]
        rises = [
            f"{run.eps[i]:g}→{run.eps[i + 1]:g}"
            for i in range(len(acc) - 1)
            if acc[i + 1] > acc[i] + 0.02
        ]
        checks.append(
            {
                "check": f"{a}: accuracy does not rise with ε",
                "passed": not rises,
                "evidence": "rises at " + ", ".join(rises) if rises else "monotone within 0.02",
            }
        )
    if "attack-fgsm" in res and "attack-pgd" in res:
        f, p = res["attack-fgsm"]["accuracy"], res["attack-pgd"]["accuracy"]
        weaker = [f"ε={e:g}" for e, fa, pa in zip(run.eps, f, p, strict=True) if pa > fa + 0.02]
        checks.append(
            {
                "check": "iterative PGD is not weaker than single-step FGSM",
                "passed": not weaker,
                "evidence": "PGD weaker at " + ", ".join(weaker)
                if weaker
                else "PGD ≤ FGSM at every ε",
            }
        )
    if "transfer" in res:
        for a in bounded:
            if a not in res["transfer"]["attacks"]:
                continue
            t, wb = res["transfer"]["attacks"][a]["accuracy"], res[f"attack-{a}"]["accuracy"]
            weaker = [
                f"ε={e:g}" for e, ta, wa in zip(run.eps, t, wb, strict=True) if wa > ta + 0.02
            ]
            checks.append(
                {
                    "check": f"{a}: white-box is not weaker than transfer from a surrogate",
                    "passed": not weaker,
                    "evidence": "white-box weaker at " + ", ".join(weaker)
                    if weaker
                    else "white-box ≤ transfer",
                }
            )
    if "unbounded" in res:
        u = res["unbounded"]
        checks.append(
            {
                "check": "an unbounded attack (PGD, ε = 1) drives accuracy to ~0",
                "passed": u["accuracy"] <= 0.05,
                "evidence": f"accuracy {u['accuracy']:.3f} on {u['n']} images",
            }
        )
    if "gradients" in res:
        g = res["gradients"]
        checks.append(
            {
                "check": "input gradients are finite and non-zero",
                "passed": g["zero"] == 0 and g["nonfinite"] == 0,
                "evidence": f"{g['zero']} zero and {g['nonfinite']} non-finite of {g['n']}",
            }
        )
    return checks


def _unbounded(run: _Run) -> dict[str, Any]:
    n = min(run.x.shape[0], 100)
    attack = ATTACKS.create(
        "pgd", eps=1.0, steps=run.config.pgd_steps, step_size=0.1, seed=run.config.seed
    )
    correct = []
    for a, b in run.batches("unbounded PGD", n):
        xb, yb = run.x[a:b].to(run.device), run.y[a:b].to(run.device)
        correct.append((_predict(run.model, attack(run.model, xb, yb)) == yb).cpu())
    c = torch.cat(correct)
    return {"accuracy": c.double().mean().item(), "n": len(c)}


def _gradients(run: _Run) -> dict[str, Any]:
    zero = nonfinite = 0
    with model_state(run.model):
        for a, b in run.batches("gradients"):
            xb = run.x[a:b].to(run.device).requires_grad_(True)
            loss = nn.functional.cross_entropy(
                run.model(xb), run.y[a:b].to(run.device), reduction="sum"
            )
            (g,) = torch.autograd.grad(loss, xb)
            flat = g.flatten(1)
            finite = torch.isfinite(flat).all(1)
            nonfinite += int((~finite).sum())
            zero += int(((flat.abs().amax(1) == 0) & finite).sum())
    return {"zero": zero, "nonfinite": nonfinite, "n": run.x.shape[0]}


def _maps(run: _Run, name: str) -> dict[str, Any]:
    """Benign vs attacked maps of one interpreter, on the first ``n_maps`` images.

    As in Zhang et al. (2020), both attacks aim at the same target class (y + 1) mod K at the
    largest ε of the sweep: PGD alone (the baseline, which ignores the map) and ADV² (which
    also keeps the map close to the benign one). Map statistics are taken over the images
    whose attack reached the target, so the two rows compare successful attacks only.

    Integrated Gradients inside ADV² uses :data:`ADV2_IG_STEPS` quadrature points (ADV²
    differentiates the map at every one of its ~140 steps, and IG's 50 points made it two
    thirds of an audit's time); every map shown and compared is the full 50-point IG.
    """
    interpreter = _build_interpreter(run, name)
    n = min(run.config.n_maps, run.x.shape[0])
    x, y = run.x[:n].to(run.device), run.y[:n].to(run.device)
    eps = max(run.eps)
    target = (y + 1) % int(run.model(x[:1]).shape[1])
    pgd = ATTACKS.create("pgd", eps=eps, steps=run.config.pgd_steps, seed=run.config.seed)
    adv2 = None
    if "adv2" in ATTACKS:
        inner = interpreter
        if name == "ig":
            options = run.config.interpreter_options.get(name, {})
            steps = min(int(options.get("steps", 50)), ADV2_IG_STEPS)
            inner = INTERPRETERS.create(name, **(options | {"steps": steps}))
        try:
            adv2 = ATTACKS.create("adv2", interpreter=inner, eps=eps)
        except (TypeError, ValueError) as err:
            run.results.setdefault("notes", []).append(f"ADV² on {name} not run: {err}")
    crafted: dict[str, list[torch.Tensor]] = {"PGD": []}
    if adv2 is not None:
        crafted["ADV²"] = []
    # small batches: ADV² takes seconds per image, and the bar's ETA needs steps
    for a, b in run.batches(f"maps-{name} (PGD, ADV²)", n, size=4):
        crafted["PGD"].append(pgd(run.model, x[a:b], y[a:b], target=target[a:b]))
        if adv2 is not None:
            try:
                crafted["ADV²"].append(adv2(run.model, x[a:b], y[a:b], target=target[a:b]))
            except (TypeError, ValueError) as err:
                run.results.setdefault("notes", []).append(f"ADV² on {name} not run: {err}")
                adv2 = None
                del crafted["ADV²"]
    adversarial = {label: torch.cat(parts) for label, parts in crafted.items()}
    benign, constant = _normalized_maps(interpreter, run.model, x)
    out: dict[str, Any] = {
        "eps": eps,
        "n": n,
        "constant_maps": int(constant.sum()),
        "target_layer": run.layers.get(name),
        "benign": benign[:8].cpu().tolist(),
        "x": x[:8].cpu().tolist(),
        "y": y[:8].cpu().tolist(),
        "pred": _predict(run.model, x[:8]).cpu().tolist(),
        "attacks": {},
    }
    for label, x_adv in adversarial.items():
        adv_map, adv_constant = _normalized_maps(interpreter, run.model, x_adv)
        pred = _predict(run.model, x_adv)
        # a constant map (benign or attacked) has no ranking to compare: left out
        used = ~constant & ~adv_constant & (pred == target)
        l1 = l1_distance(benign[used], adv_map[used]) if bool(used.any()) else torch.zeros(0)
        iou = topk_iou(benign[used], adv_map[used]) if bool(used.any()) else torch.zeros(0)
        out["attacks"][label] = {
            "reached_target": (pred == target).double().mean().item(),
            "n_used": int(used.sum()),
            "constant_maps": int(adv_constant.sum()),
            "l1": l1.mean().item() if l1.numel() else None,
            "iou": iou.mean().item() if iou.numel() else None,
            "maps": adv_map[:8].cpu().tolist(),
            "pred": pred[:8].cpu().tolist(),
        }
    return out


def _normalized_maps(
    interpreter: Interpreter, model: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """[0, 1] maps and which are constant (see :data:`CONSTANT_RTOL`); constant maps are
    returned as zeros rather than as normalized rounding noise."""
    raw = interpreter(model, x, raw=True)
    flat = raw.flatten(1)
    span = flat.amax(1) - flat.amin(1)
    constant = span <= CONSTANT_RTOL * flat.abs().amax(1)
    maps = normalize_maps(raw)
    maps[constant] = 0
    return maps, constant


def _diagnosis(run: _Run) -> dict[str, Any]:
    """Per-layer amplification, patching and information loss (docs/diagnosis.md)."""
    diagnosis = importlib.import_module("underfire.diagnosis")
    n = min(64, run.x.shape[0])
    x, y = run.x[:n].to(run.device), run.y[:n].to(run.device)
    eps = run.eps[len(run.eps) // 2]
    x_adv = ATTACKS.create("pgd", eps=eps, steps=run.config.pgd_steps, seed=run.config.seed)(
        run.model, x, y
    )
    try:
        result = diagnosis.layer_vulnerability(run.model, x, x_adv, y=y)
    except ValueError as err:  # a user's model with no default layer list
        return {"skipped": f"per-layer diagnosis not run: {err}"}
    rows = [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        for row in result.rows()
    ]
    return {"eps": eps, "n": n, "table": rows}


def audit(
    model: nn.Module,
    data: Any,
    *,
    config: AuditConfig | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Audit ``model`` (any ``nn.Module`` taking [0, 1] NCHW images, returning logits).

    Args:
        model: the classifier; normalization inside it, as everywhere in underfire.
        data: a Dataset, a DataLoader or an ``(x, y)`` pair; the first ``config.n`` samples
            are audited.
        config: what to run (:class:`AuditConfig`); keyword ``overrides`` replace its fields,
            e.g. ``audit(model, data, attacks=("fgsm", "pgd"), n=500)``.
        out: folder for results.json, report.md/html, figures and the resumable parts; None
            keeps everything in memory.
        progress: show progress bars with ETA (the CLI turns them on).

    Returns:
        The results (also written to ``out/results.json``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    base = config or AuditConfig()
    config = AuditConfig(**{**asdict(base), **_tuples(overrides)}) if overrides else base
    x, y = collect_data(data, config.n)
    eps = sorted({0.0, *(config.eps or default_eps(x))})
    out_dir = Path(out) if out is not None else None
    run = _Run(model=model, x=x, y=y, config=config, eps=eps, out=out_dir, progress=progress)
    with model_state(model, freeze=False):
        model.eval()
        _prepare_interpreters(run)  # before anything is saved: a fixed call is not "other settings"
        if out_dir is not None:
            _check_resumable(out_dir, config, x)
        clean = _part(run, "clean", _clean, always=True)
        assert clean is not None
        for name in config.attacks:
            if name in MINIMAL:
                _part(run, f"attack-{name}", functools.partial(_minimal_attack, name=name))
            else:
                _part(run, f"attack-{name}", functools.partial(_bounded_on_model, name=name))
        run.results["worst_case"] = _worst_case(run, clean["correct"])
        if config.surrogate:
            _part(run, "transfer", _transfer)
        _part(run, "unbounded", _unbounded)
        _part(run, "gradients", _gradients)
        for name in config.interpreters:
            _part(run, f"maps-{name}", functools.partial(_maps, name=name))
        if importlib.util.find_spec("underfire.diagnosis") is not None:
            _part(run, "diagnosis", _diagnosis)
    run.results["soundness"] = _soundness(run)
    run.results["config"] = asdict(config) | {"eps": eps}
    run.results["seconds"] = round(time.perf_counter() - run.started, 1)
    run.results["part_seconds"] = round(
        sum(v["seconds"] for v in run.results.values() if isinstance(v, dict) and "seconds" in v),
        1,
    )
    if out_dir is not None:
        _io.write_json(out_dir / "results.json", _summary(run.results))
        write_report(run.results, out_dir)
    return run.results


def _transfer(run: _Run) -> dict[str, Any]:
    """The bounded attacks crafted on a surrogate and evaluated on the model. The surrogate
    learns the model's labels of 80% of the audited images; its agreement with the model is
    measured on the 20% it did not see (on its training images when fewer than 10 are
    audited), since agreement on training images says little."""
    n = run.x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(run.config.seed))
    held = n // 5 if n >= 10 else 0
    train, test = (order[held:], order[:held]) if held else (order, order)
    surrogate = _train_surrogate(run, train)
    xs = run.x[test].to(run.device)
    agreement = (_predict(surrogate, xs) == _predict(run.model, xs)).cpu()
    attacks = {
        a: _bounded_attack(run, a, surrogate) for a in run.config.attacks if a not in MINIMAL
    }
    return {
        "surrogate": "ross-cnn (hidden 256) on the model's labels",
        "agreement": agreement.double().mean().item(),
        "agreement_on": f"{held} held-out images" if held else f"its {n} training images",
        "trained_on": len(train),
        "attacks": attacks,
    }


def _tuples(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}


def _check_resumable(out: Path, config: AuditConfig, x: torch.Tensor) -> None:
    """Parts saved by an audit with other settings must not be mixed into this one."""
    signature = {
        "config": asdict(config),
        "shape": list(x.shape),
        "checksum": float(x.double().sum()),
    }
    path = out / "parts" / "signature.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(signature)):
            raise ValueError(
                f"{out} holds an audit with other settings or data; choose another --out, or "
                "delete its parts/ folder to start again"
            )
    else:
        _io.write_json(path, signature)


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    """results.json without the bulky per-sample lists and map tensors."""
    drop = {"correct", "maps", "x", "y", "benign", "success", "linf", "pred"}

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            # only lists: the median L∞ (a number) stays, the per-sample L∞ list goes
            return {k: strip(w) for k, w in v.items() if not (k in drop and isinstance(w, list))}
        if isinstance(v, list):
            return [strip(w) for w in v]
        return v

    return strip(results)


# ------------------------------------------------------------------------------ the report


def write_report(results: dict[str, Any], out: Path) -> Path:
    """report.md and a self-contained report.html, each section saying what it means."""
    figures = out / "figures"
    rep = Report("underfire audit")
    eps = results["config"]["eps"]
    clean = results["clean"]
    rep.text(
        f"Audited {clean['n']} samples in {results['seconds']:.0f} s"
        + (
            f" (this run; it resumed an earlier one, and all parts took "
            f"{results['part_seconds']:.0f} s of computing together). "
            if results.get("resumed")
            else ". "
        )
        + (
            f"Skipped for the time budget: {', '.join(results['skipped'])}."
            if results.get("skipped")
            else ""
        )
    )
    rep.section("Clean accuracy")
    rep.text(
        f"The model classifies **{clean['accuracy']:.1%}** of the audited samples correctly; "
        "every robust accuracy below is bounded by this number."
    )

    rep.section("Robust accuracy under attack (white-box)")
    rows, curves = [], {}
    for name in results["config"]["attacks"]:
        part = results.get(f"attack-{name}")
        if part is None or name in MINIMAL:
            continue
        curves[name] = part["accuracy"]
        rows.append(
            {"attack": name} | {f"ε={e:.3g}": a for e, a in zip(eps, part["accuracy"], strict=True)}
        )
    worst = results["worst_case"]
    rows.append(
        {"attack": "worst case (per sample)"}
        | {f"ε={e:.3g}": a for e, a in zip(eps, worst["accuracy"], strict=True)}
    )
    curves["worst case"] = worst["accuracy"]
    transfer = results.get("transfer")
    if transfer:
        for name, part in transfer["attacks"].items():
            curves[f"{name} (transfer)"] = part["accuracy"]
            rows.append(
                {"attack": f"{name}, transferred"}
                | {f"ε={e:.3g}": a for e, a in zip(eps, part["accuracy"], strict=True)}
            )
    i_mid = len(eps) // 2
    rep.text(
        f"At ε = {eps[i_mid]:.3g} (L∞, inputs in [0, 1]) an attacker who knows the model keeps "
        f"**{worst['accuracy'][i_mid]:.1%}** of the samples correct in the worst case over "
        f"{', '.join(worst['attacks'])}: that is the accuracy to expect under attack, not the clean one."
    )
    rep.table(rows)
    fig = new_figure(6, 3.6)
    ax = fig.subplots()
    markers = iter("os^Dvp<>h*")
    for label, acc in curves.items():
        if label == "worst case":
            # wide and pale, drawn first: an attack that is the worst case stays visible on it
            ax.plot(eps, acc, "k-", lw=5, alpha=0.3, zorder=1, label=label)
        else:
            ls = "--" if "transfer" in label else "-"
            ax.plot(eps, acc, ls=ls, marker=next(markers, "o"), ms=5, zorder=2, label=label)
    ax.set(xlabel="ε (L∞)", ylabel="accuracy", ylim=(-0.02, 1.02), xlim=(0, max(eps) * 1.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    rep.figure(
        save_figure(fig, figures / "robust_accuracy.png"),
        "Accuracy vs ε; the wide grey line is the per-sample worst case (an attack lying on "
        "it is the worst case there); dashed lines are transferred attacks",
    )
    if transfer:
        on = transfer.get("agreement_on", "its training images")
        rep.text(
            f"Transferred rows craft the examples on a surrogate ({transfer['surrogate']}, "
            f"trained on {transfer.get('trained_on', clean['n'])} of the audited images; it "
            f"agrees with the model on {transfer['agreement']:.1%} of {on}) and evaluate them "
            "on the model: what an attacker without the weights achieves."
        )

    minimal = [n for n in results["config"]["attacks"] if n in MINIMAL and f"attack-{n}" in results]
    if minimal:
        rep.section("Minimal perturbations")
        rep.text(
            "Attacks that search for the smallest change that flips the prediction; smaller "
            "median norms mean a more fragile model. Success and the medians are over the "
            "correctly classified images only (a misclassified image needs no perturbation), "
            "the medians over those the attack flipped."
        )
        rep.table(
            [
                {
                    "attack": n,
                    "images": results[f"attack-{n}"].get("n_right", clean["n"]),
                    "success": results[f"attack-{n}"]["success_rate"],
                    **{
                        f"median {NORM_NAMES[k]}": v
                        for k, v in results[f"attack-{n}"]["median"].items()
                    },
                }
                for n in minimal
            ]
        )
        weak = [n for n in minimal if results[f"attack-{n}"]["success_rate"] < MINIMAL_SUCCESS]
        for n in weak:
            rate = results[f"attack-{n}"]["success_rate"]
            rep.text(
                f"**Warning:** {n} flipped only {rate:.0%} of the correctly classified images. "
                "A minimal-perturbation attack should flip nearly all of them; its medians "
                "describe only the easiest images, and a low rate says the attack's settings "
                "are too weak here, not that the model is hard to fool (compare the bounded "
                "attacks above)."
            )

    rep.section("Gradient-masking checks")
    checks = results["soundness"]
    failed = [c for c in checks if not c["passed"]]
    rep.text(
        "All checks passed: the robust accuracies above are not inflated by masked gradients."
        if not failed
        else f"{len(failed)} of {len(checks)} checks failed: robust accuracy may be overestimated "
        "(gradient masking); trust the worst case and the transfer rows over single attacks."
    )
    rep.table(
        [
            {
                "check": c["check"],
                "verdict": "pass" if c["passed"] else "FAIL",
                "evidence": c["evidence"],
            }
            for c in checks
        ]
    )

    maps = [n for n in results["config"]["interpreters"] if f"maps-{n}" in results]
    if maps:
        rep.section("Explanations under attack")
        first = results[f"maps-{maps[0]}"]
        shown = len(first["x"])
        rep.text(
            f"Maps of {first['n']} images (the figures show the first {shown}), benign vs "
            f"attacked toward the class (y + 1) mod K at ε = {first['eps']:.3g}; L1 and IoU are "
            "averaged over the images whose attack reached that class. High L1 / "
            "low IoU under PGD means the explanation changes visibly when the prediction is "
            "attacked; a small change under ADV² means an attacker can change the prediction "
            "while keeping the explanation looking benign."
        )
        rows = []
        for n in maps:
            part = results[f"maps-{n}"]
            for label, a in part["attacks"].items():
                rows.append(
                    {
                        "interpreter": n,
                        "attack": label,
                        "reached target": a["reached_target"],
                        "images compared": a["n_used"],
                        "map L1": "n/a" if a["l1"] is None else a["l1"],
                        "top-k IoU": "n/a" if a["iou"] is None else a["iou"],
                        "constant maps (benign / attacked)": (
                            f"{part['constant_maps']} / {a.get('constant_maps', 0)}"
                        ),
                    }
                )
        rep.table(rows)
        for n in maps:
            layer = results[f"maps-{n}"].get("target_layer")
            if layer:
                h, w = layer["size"]
                rep.text(
                    f"{n} reads the feature map of `{layer['name']}` ({h}×{w} at this input "
                    f"size; {layer['how']})"
                    + (
                        ": a 1×1 map is constant, so these maps carry no spatial information."
                        if h * w == 1
                        else "."
                    )
                )
        constant = []
        for n in maps:
            part = results[f"maps-{n}"]
            attacked = sum(a.get("constant_maps", 0) for a in part["attacks"].values())
            if part["constant_maps"] or attacked:
                constant.append(f"{n} ({part['constant_maps']} benign, {attacked} attacked)")
        if constant:
            rep.text(
                f"Constant maps (max − min ≤ {CONSTANT_RTOL:g} · max |map|) carry no "
                "information: they are "
                "shown blank and left out of L1/IoU, with their image pair: "
                + ", ".join(constant)
                + "."
            )
        for n in maps:
            layer = results[f"maps-{n}"].get("target_layer")
            where = (
                f" (layer {layer['name']}, {layer['size'][0]}×{layer['size'][1]})" if layer else ""
            )
            rep.figure(
                _map_figure(results[f"maps-{n}"], n, figures),
                f"{n}{where}: images, their benign maps, and the maps of attacked images "
                "(titles: pred (true); red: wrong)",
            )

    diag = results.get("diagnosis")
    if diag and "table" in diag:
        rep.section("Per-layer diagnosis")
        table, dropped = readable_rows(diag["table"])
        rep.text(
            f"How a PGD perturbation (ε = {diag['eps']:.3g}, {diag['n']} images) grows through "
            "the layers. Amplification is the relative change of a layer's features under the "
            "attack, growth its ratio to the previous layer's. The top-10 % columns patch only "
            "the 10 % of the layer's units that the attack changed most: restored is the share "
            "of the correct-class probability that comes back when they get their clean values, "
            "broken the share lost when only they get the attacked values. Information loss "
            "(0 to 1) is the share of the image's variance that a linear decoder cannot recover "
            "from the layer's features. Layers "
            "with high amplification and high information loss are where the model is most "
            "vulnerable."
        )
        if dropped:
            rep.text(
                "Patching a whole layer restores and breaks the prediction completely at every "
                "layer here (1.00), as it must at a layer every path goes through (a network "
                "without branches), so those two columns are left out."
            )
        rep.table(table)
    elif diag:
        run_notes = results.setdefault("notes", [])
        if diag["skipped"] not in run_notes:
            run_notes.append(diag["skipped"])
    if results.get("notes"):
        rep.section("Notes")
        rep.text("\n".join(f"- {n}" for n in results["notes"]))
    return rep.write(out)[1]


def _map_figure(part: dict[str, Any], name: str, figures: Path) -> Path:
    """Rows: the images (titled pred (true), red when wrong), their benign maps, then the maps
    of each attack's examples titled the same way; one colour bar."""
    x, y = torch.tensor(part["x"]), torch.tensor(part["y"])
    rows: list[tuple[str, torch.Tensor, torch.Tensor | None]] = [
        ("benign map", torch.tensor(part["benign"]), torch.tensor(part["pred"]))
    ]
    for label, a in part["attacks"].items():
        rows.append((f"{label} map", torch.tensor(a["maps"]), torch.tensor(a["pred"])))
    k = x.shape[0]
    fig = new_figure(1.45 * k + 1.2, 1.6 * (len(rows) + 1))
    axes = fig.subplots(len(rows) + 1, k, squeeze=False)
    shown = None
    for i in range(k):
        img = x[i].permute(1, 2, 0).numpy()
        axes[0][i].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
    titles, colors = prediction_titles(torch.tensor(part["pred"]), y)
    for i in range(k):
        axes[0][i].set_title(titles[i], fontsize=8, color=colors[i])
    axes[0][0].set_ylabel("image", fontsize=9)
    for r, (label, maps, pred) in enumerate(rows, start=1):
        t, c = prediction_titles(pred, y) if pred is not None else ([""] * k, ["black"] * k)
        for i in range(k):
            shown = axes[r][i].imshow(maps[i, 0].numpy(), cmap="jet", vmin=0, vmax=1)
            if r > 1:
                axes[r][i].set_title(t[i], fontsize=8, color=c[i])
        axes[r][0].set_ylabel(label, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="relevance")
    return save_figure(fig, figures / f"maps_{name}.png")
