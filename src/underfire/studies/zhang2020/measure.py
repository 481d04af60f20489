"""Building blocks of the ADV² reproduction (Zhang et al., USENIX Security 2020): the
interpreters of a classifier, batched maps, the attacks (targeted PGD baseline and ADV²) and
per-sample measures.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core import distributed
from underfire.interpreters import create_interpreter
from underfire.interpreters.base import Interpreter
from underfire.interpreters.mask import MaskWarning
from underfire.metrics import l1_distance, topk_iou
from underfire.studies.zhang2020.config import Zhang2020Config

__all__ = [
    "adv2_attack",
    "attack_measures",
    "attack_row",
    "usable_pairs",
    "batched",
    "build_interpreters",
    "ensemble_members",
    "has_gap_head",
    "map_measures",
    "maps_of",
    "pgd_attack",
    "random_targets",
    "records_of",
    "rts_data",
    "run_attack",
    "select_images",
    "summarize",
]


# ----------------------------------------------------------------------------- interpreters


def has_gap_head(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether CAM applies (last conv features → global average pooling → one linear layer)."""
    try:
        create_interpreter("cam")(model, x[:1])
    except (ValueError, TypeError):
        return False
    return True


def build_interpreters(
    cfg: Zhang2020Config, model: nn.Module, probe: torch.Tensor, rts: Interpreter | None
) -> tuple[dict[str, Interpreter], dict[str, str]]:
    """The interpreters of ``cfg.interpreters`` for ``model`` and notes on substitutions.

    CAM needs a GAP head: on networks without one (the Ross CNN) Grad-CAM, its
    generalization to any architecture, stands in under the name ``gradcam``. RTS needs the
    trained masking network ``rts``. GRAD and MASK are the authors' (:meth:`Saliency.authors`:
    the loss gradient, pooled 2×2 from 32 px, 4×4 from 128 px; :meth:`Mask.authors`).
    """
    from underfire.interpreters import Mask, Saliency

    out: dict[str, Interpreter] = {}
    notes: dict[str, str] = {}
    gap = has_gap_head(model, probe)
    for name in cfg.interpreters:
        if name == "cam" and not gap:
            notes["cam"] = "no GAP head: Grad-CAM (CAM's generalization) stands in for CAM"
            name = "gradcam"
        if name in out:
            continue
        if name == "rts":
            if rts is None:
                notes["rts"] = "RTS not trained (no training images)"
                continue
            out["rts"] = rts
        elif name == "mask":
            out["mask"] = Mask.authors(
                int(min(probe.shape[-2:])), steps=cfg.mask_steps, seed=cfg.seed
            )
        elif name == "grad":
            out["grad"] = Saliency.authors(int(min(probe.shape[-2:])))
        else:
            out[name] = create_interpreter(name)
    return out, notes


def ensemble_members(cfg: Zhang2020Config, interps: dict[str, Interpreter]) -> list[str]:
    """Members of the ensemble countermeasure that this classifier has (cam ↔ gradcam)."""
    names = []
    for m in cfg.ensemble:
        if m not in interps and m == "cam" and "gradcam" in interps:
            m = "gradcam"
        if m in interps and m not in names:
            names.append(m)
    return names


# ----------------------------------------------------------------------------- maps and attacks


def batched(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def maps_of(
    interp: Interpreter,
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None,
    batch: int,
    found: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """[0, 1] maps (N, 1, H, W) of ``x`` for ``target`` (None: the model's prediction).

    For MASK, the per-sample "a deletion was found" flags of ``Mask.last_result`` are appended
    to ``found`` (MASK's own warning is silenced: the flags are reported instead).

    Under ``torchrun`` each rank maps a block of whole batches (as :func:`run_attack`) and
    every rank gets all maps and flags, in order.
    """
    out, flags = [], []
    for sl in distributed.my_batches(x.shape[0], batch):
        t = None if target is None else target[sl]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MaskWarning)
            out.append(interp(model, x[sl], t).detach())
        result = getattr(interp, "last_result", None)
        if found is not None and result is not None:
            flags.append(result.found.detach().cpu())
    maps = torch.cat(out) if out else x.new_zeros((0, 1, *x.shape[-2:]))
    if found is not None:
        found.extend(f for fs in distributed.gather_objects(flags) for f in fs)
    return distributed.gather(maps, x.shape[0], batch_size=batch)


def select_images(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first ``n`` correctly classified images; with too few (untrained or random
    weights), the first ``n`` images labelled with the model's own predictions."""
    with torch.no_grad():
        pred = torch.cat([model(x[sl]).argmax(1) for sl in batched(x.shape[0], batch)])
    ok = (pred == y).nonzero().flatten()
    if ok.numel() >= min(n, 2):
        idx = ok[:n]
        return x[idx], y[idx], "correctly classified test images"
    return x[:n], pred[:n], "the first test images, labelled with the model's predictions"


def rts_data(
    x: torch.Tensor, y: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """RTS's training images ``x, y``, plus adversarial examples ``extra`` for RTS^A."""
    if extra is None:
        return x, y
    # RTS samples its batches uniformly: repeat the few adversarial examples so that they make
    # up a quarter of the training set of RTS^A.
    xa, ya = extra[0].to(x.device), extra[1].to(y.device)
    reps = max(1, round(x.shape[0] / 3 / max(1, xa.shape[0])))
    return torch.cat([x, xa.repeat(reps, 1, 1, 1)]), torch.cat([y, ya.repeat(reps)])


def random_targets(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A uniformly random class ≠ y per sample (the paper's random targets), seeded."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, (y.shape[0],), generator=gen)
    return (y.cpu() + shift) % num_classes


def pgd_attack(cfg: Zhang2020Config, seed: int) -> Any:
    """The baseline: targeted L∞ PGD alone, with ADV²'s ε and step."""
    from underfire.attacks import PGD

    return PGD(
        eps=cfg.eps, step_size=cfg.step_size, steps=cfg.pgd_steps, random_start=False, seed=seed
    )


def adv2_attack(
    interp: Interpreter, cfg: Zhang2020Config, seed: int, image_size: int
) -> tuple[Any, dict[str, Any]]:
    """ADV² against ``interp``: the preset of ``cfg.adv2_preset`` (by image size if None) with
    its step counts scaled by ``cfg.adv2_scale``; (attack, the settings used).

    Raises:
        ImportError: ADV² is not available in this installation.
    """
    from underfire.attacks import ADV2
    from underfire.attacks.adv2 import preset_for_size

    preset = cfg.adv2_preset or preset_for_size(image_size)
    common: dict[str, Any] = {
        "eps": cfg.eps,
        "step_size": cfg.step_size,
        "preset": preset,
        "seed": seed,
    }
    if cfg.adv2_kappa is not None:
        common["kappa"] = cfg.adv2_kappa
    base = ADV2(interp, **common)
    steps = base.steps if isinstance(base.steps, tuple) else (base.steps,)
    scaled = tuple(max(1, round(s * cfg.adv2_scale)) for s in steps)
    kwargs = common | {
        "warm_steps": max(1, round(base.warm_steps * cfg.adv2_scale)),
        "steps": scaled if len(scaled) > 1 else scaled[0],
    }
    attack = ADV2(interp, **kwargs)
    info = {
        "preset": preset,
        "warm_steps": attack.warm_steps,
        "joint_steps": sum(scaled),
        "kappa": attack.kappa,
        "lam": list(attack.lam) if isinstance(attack.lam, tuple) else [attack.lam],
    }
    return attack, info


def run_attack(
    attack: Any,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    batch: int,
    tick: Callable[[], None] = lambda: None,
) -> tuple[torch.Tensor, list[Any]]:
    """x_adv in batches and the attack's per-batch ``result`` records (if it keeps one).

    Under ``torchrun`` each rank attacks a block of whole batches (each the batch one process
    attacks, so a random start seeded per call draws the same noise) and every rank gets all
    examples and records, in order; the records as :func:`records_of` reads them (their 1-d
    tensors, on the CPU).
    """
    n = x.shape[0]
    outs, records = [], []
    for sl in distributed.my_batches(n, batch):
        outs.append(attack(model, x[sl], y[sl], target=t[sl]).detach())
        records.append(getattr(attack, "result", None))
        tick()
    if not distributed.active():
        return torch.cat(outs), records
    sent = [None if r is None else _vectors(r) for r in records]
    every = [r for rs in distributed.gather_objects(sent) for r in rs]
    mine = torch.cat(outs) if outs else x[:0]
    return distributed.gather(mine, n, batch_size=batch), every


def _vectors(record: Any) -> dict[str, torch.Tensor]:
    items = record.items() if isinstance(record, dict) else vars(record).items()
    return {
        k: v.detach().float().cpu()
        for k, v in items
        if isinstance(v, torch.Tensor) and v.dim() == 1
    }


def records_of(records: list[Any]) -> dict[str, torch.Tensor]:
    """Concatenate an attack's per-batch result records (dicts or objects of 1-d tensors)."""
    merged: dict[str, list[torch.Tensor]] = {}
    for r in records:
        for k, v in ({} if r is None else _vectors(r)).items():
            merged.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in merged.items()}


# ----------------------------------------------------------------------------- measures


def attack_measures(
    model: nn.Module, x_adv: torch.Tensor, t: torch.Tensor, batch: int
) -> dict[str, torch.Tensor]:
    """Per sample: success (prediction = target) and the softmax probability of the target."""
    preds, conf = [], []
    with torch.no_grad():
        for sl in batched(x_adv.shape[0], batch):
            p = F.softmax(model(x_adv[sl]), dim=1)
            preds.append(p.argmax(1))
            conf.append(p.gather(1, t[sl, None].to(p.device)).squeeze(1))
    pred = torch.cat(preds).cpu()
    return {"success": pred == t.cpu(), "confidence": torch.cat(conf).cpu(), "pred": pred}


def map_measures(benign: torch.Tensor, other: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sample: L1 distance and mean top-k IoU of two batches of [0, 1] maps."""
    n = min(benign.shape[0], other.shape[0])
    a, b = benign[:n].float().cpu(), other[:n].float().cpu()
    return {"l1": l1_distance(a, b), "iou": topk_iou(a, b)}


def summarize(v: torch.Tensor) -> float:
    return float(v.float().mean()) if v.numel() else float("nan")


def attack_row(
    model: nn.Module,
    x_adv: torch.Tensor,
    t: torch.Tensor,
    benign: dict[str, torch.Tensor],
    maps: dict[str, torch.Tensor],
    batch: int,
    usable: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Success, confidence and per-interpreter map measures of one set of adversarial inputs.

    Confidence is the mean softmax probability of the target over the successful samples
    (``confidence_successful``: the paper's) and over all (``confidence``). ``usable[k]``
    flags, per sample, the map pairs of interpreter ``k`` that explain something (MASK: a
    deletion was found in the benign and in the adversarial map); the others — two blank maps
    would count as identical — are left out of L1 and IoU and counted in ``blank``."""
    a = attack_measures(model, x_adv, t, batch)
    hit = a["success"].bool()
    row: dict[str, Any] = {
        "n": int(x_adv.shape[0]),
        "success": summarize(a["success"]),
        "confidence": summarize(a["confidence"]),
        "confidence_successful": summarize(a["confidence"][hit]) if bool(hit.any()) else None,
        "maps": {},
    }
    for name, m in maps.items():
        mm = map_measures(benign[name], m)
        keep = torch.ones_like(mm["l1"], dtype=torch.bool)
        if usable is not None and name in usable:
            keep = usable[name][: keep.numel()].bool().cpu()
        row["maps"][name] = {
            "n": int(keep.sum()),
            "blank": int((~keep).sum()),
            "l1": summarize(mm["l1"][keep]),  # NaN when every pair is blank
            "iou": summarize(mm["iou"][keep]),
            # per sample, None for a blank pair (indices stay those of the attacked images)
            "l1_all": [
                v if k else None for v, k in zip(mm["l1"].tolist(), keep.tolist(), strict=True)
            ],
        }
    return row


def usable_pairs(
    benign_found: dict[str, torch.Tensor], found: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per interpreter with "found" flags (MASK), the samples whose benign and adversarial
    maps both explain something (a blank map is not a map to compare)."""
    out = {}
    for k, f in found.items():
        b = benign_found.get(k)
        n = f.numel() if b is None else min(f.numel(), b.numel())
        flags = f[:n].bool()
        out[k] = flags if b is None else flags & b[:n].bool()
    return out
