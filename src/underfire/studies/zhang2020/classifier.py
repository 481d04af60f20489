"""One classifier of the ADV² reproduction (Zhang et al., USENIX Security 2020): its attacked
images, its RTS network, the benign maps and the noise baseline, the PGD baseline and ADV²
against every interpreter.

Every expensive result is a sub-part of the run (``run.cached``, stored as tensors under
``OUT/parts``) keyed on the config fields it reads and on the identity of the classifier, the
attacked images and the RTS network it uses: a second run reuses them, a retrained classifier
or RTS network recomputes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from underfire.interpreters.base import Interpreter
from underfire.interpreters.rts import RTS, MaskingNetwork, RTSConfig, train_rts
from underfire.studies.base import StudyRun
from underfire.studies.zhang2020.config import Zhang2020Config
from underfire.studies.zhang2020.measure import (
    adv2_attack,
    attack_row,
    build_interpreters,
    map_measures,
    maps_of,
    pgd_attack,
    random_targets,
    records_of,
    rts_data,
    run_attack,
    select_images,
    summarize,
    usable_pairs,
)

__all__ = ["Attacked", "attack_classifier", "attacked_images", "get_rts"]

#: The config fields each kind of sub-part reads (the data and models it uses key it too).
MAPS = ("interpreters", "mask_steps", "mask_eval", "seed", "eval_batch")
NOISE = (*MAPS, "eps", "noise_samples")
PGD = (*MAPS, "eps", "step_size", "pgd_steps")
ADV2 = (*MAPS, "eps", "step_size", "adv2_preset", "adv2_scale", "adv2_kappa")
RTS_TRAINING = ("rts_steps", "rts_batch", "seed")


def get_rts(
    run: StudyRun, part: str, model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> tuple[RTS, dict[str, Any]]:
    """The RTS masking network of ``model`` trained on ``data`` (the sub-part ``part``), and
    its training record. Its weights are also written to ``OUT/models/PART.pt`` (for
    ``--rts-checkpoint``); the run itself reuses only the sub-part."""
    computed = run.cached(
        part,
        lambda: _train_rts(run, model, data),
        reads=RTS_TRAINING,
        uses={"classifier": model, "images": data},
        store="torch",
        code=_train_rts,
    )
    rts = _rts_of(computed["network"], run.device)
    reused = part in run.reused
    if run.out is not None:
        path = run.out / "models" / f"{part.replace('/', '.')}.pt"
        if not reused or not path.exists():
            rts.save(path)
    info = {
        "seconds": 0.0 if reused else computed["seconds"],
        "final_loss": computed["final_loss"],
        "reused": reused,
    }
    return rts, info


def _train_rts(
    run: StudyRun, model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, Any]:
    cfg: Zhang2020Config = run.config
    t0 = time.perf_counter()
    rts, history = train_rts(
        model,
        data,
        RTSConfig(steps=cfg.rts_steps, batch_size=cfg.rts_batch, seed=cfg.seed),
        device=run.device,
        progress=run.progress,
    )
    net = rts.network
    return {
        "network": {
            "config": dict(net.config),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "target_layer": rts.target_layer or "",
            "meta": rts.meta,
        },
        "seconds": round(time.perf_counter() - t0, 2),
        "final_loss": history[-1]["loss"] if history else None,
    }


def _rts_of(stored: dict[str, Any], device: torch.device) -> RTS:
    """The RTS interpreter of a stored masking network."""
    config = dict(stored["config"])
    config["feat_size"] = tuple(config["feat_size"])
    config["input_size"] = tuple(config["input_size"])
    with torch.random.fork_rng(devices=[]):  # building the network draws initial weights
        net = MaskingNetwork(**config)
    net.load_state_dict(stored["state_dict"])
    net.to(device).eval()
    return RTS(net, target_layer=stored["target_layer"] or None, meta=dict(stored["meta"]))


@dataclass
class Attacked:
    """One classifier's attacked images, targets and interpreters: what its sub-parts share."""

    run: StudyRun
    name: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    interps: dict[str, Interpreter]
    n_of: dict[str, int]
    rts: RTS | None

    @property
    def cfg(self) -> Zhang2020Config:
        return self.run.config

    @property
    def batch(self) -> int:
        return self.cfg.eval_batch

    def uses(self) -> dict[str, Any]:
        """The models, data and interpreter settings every sub-part of this classifier
        depends on (every part computes maps; an interpreter's settings, defaults included,
        are in the key so that a changed default is recomputed, never reused)."""
        used: dict[str, Any] = {
            "classifier": self.model,
            "images": (self.x, self.y, self.t),
            "interpreters": {k: g.config() for k, g in self.interps.items()},
        }
        if self.rts is not None:
            used["rts"] = self.rts.network
        return used

    def cached(
        self,
        part: str,
        compute: Callable[[], dict[str, Any]],
        *,
        reads: tuple[str, ...],
        code: Callable[..., Any],
        uses: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``compute()``, or its stored result (the sub-part ``NAME/PART``)."""
        return self.run.cached(
            f"{self.name}/{part}",
            compute,
            reads=reads,
            uses=self.uses() | (uses or {}),
            store="torch",
            code=code,
        )

    def reused(self, part: str) -> bool:
        return f"{self.name}/{part}" in self.run.reused

    def maps(
        self, x_in: torch.Tensor, target: torch.Tensor | None, n_max: int | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Every interpreter's maps of ``x_in`` (each on its first ``n_of`` images), and for
        MASK its per-image "a deletion was found" flags (the others are all-zero maps)."""
        maps, found = {}, {}
        for k, g in self.interps.items():
            n = min(self.n_of[k], x_in.shape[0] if n_max is None else n_max)
            flags: list[torch.Tensor] = []
            maps[k] = maps_of(
                g, self.model, x_in[:n], None if target is None else target[:n], self.batch, flags
            )
            if flags:
                found[k] = torch.cat(flags).float()
        return maps, found


def attacked_images(run: StudyRun, name: str, model: nn.Module) -> tuple[Attacked, dict[str, Any]]:
    """Select the images, draw their targets, train RTS and build the interpreters; (the
    attacked set, its description for the results)."""
    cfg: Zhang2020Config = run.config
    test, train = run.state["test"], run.state["train"]
    num_classes = int(getattr(model, "num_classes", 0) or test.num_classes)
    pool = slice(0, max(20 * cfg.n_eval, 500))  # enough candidates without the whole test set
    x, y, chosen = select_images(
        model, test.x[pool].to(run.device), test.y[pool].to(run.device), cfg.n_eval, cfg.eval_batch
    )
    t = random_targets(y, num_classes, cfg.seed).to(run.device)
    res: dict[str, Any] = {"timings": {}, "n_eval": int(x.shape[0]), "images": chosen}
    rts = None
    if "rts" in cfg.interpreters and train is not None and len(train) >= 2:
        # trained on the training images; used as an interpreter and as an ensemble member
        run.log(f"{name}: RTS ({cfg.rts_steps} steps)")
        n_clean = min(len(train), 4000)
        rts, res["rts_training"] = get_rts(
            run, f"{name}/rts", model, rts_data(train.x[:n_clean], train.y[:n_clean])
        )
    interps, res["notes"] = build_interpreters(cfg, model, x, rts)
    res["interpreters"] = list(interps)
    n_of = {
        k: (min(cfg.mask_eval or x.shape[0], x.shape[0]) if k == "mask" else x.shape[0])
        for k in interps
    }
    res["n_per_interpreter"] = n_of
    return Attacked(run, name, model, x, y, t, interps, n_of, rts), res


def _benign(a: Attacked) -> dict[str, Any]:
    maps, found = a.maps(a.x, a.y)
    return {"maps": maps, "found": found}


def _noise(a: Attacked) -> dict[str, Any]:
    """Maps of the images under random ±ε signs: how much a map moves with no attack."""
    cfg, x = a.cfg, a.x
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    xs: list[torch.Tensor] = []
    maps: dict[str, list[torch.Tensor]] = {k: [] for k in a.interps}
    for _ in range(cfg.noise_samples):
        sign = torch.randint(0, 2, x.shape, generator=gen).to(x) * 2 - 1
        xn = (x + cfg.eps * sign).clamp(0, 1)
        for k, m in a.maps(xn, a.y)[0].items():
            maps[k].append(m)
        xs.append(xn)
    return {"x": xs[0], "maps": {k: torch.cat(v) for k, v in maps.items()}}


def _pgd(a: Attacked) -> dict[str, Any]:
    x_adv, _ = run_attack(pgd_attack(a.cfg, a.cfg.seed), a.model, a.x, a.y, a.t, a.batch)
    maps, found = a.maps(x_adv, None)
    return {"x_adv": x_adv, "maps": maps, "found": found}


def _adv2(a: Attacked, k: str, attack: Any) -> dict[str, Any]:
    n = a.n_of[k]
    t0 = time.perf_counter()
    x_adv, records = run_attack(attack, a.model, a.x[:n], a.y[:n], a.t[:n], a.batch)
    maps, found = a.maps(x_adv, None, n)
    return {
        "x_adv": x_adv,
        "maps": maps,
        "found": found,
        "seconds": time.perf_counter() - t0,
        "record": records_of(records),
    }


def noise_rows(a: Attacked, benign: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The benign-noise baseline per interpreter (its L1's 90th percentile calibrates the
    findings' detector)."""
    noise = a.cached("noise", lambda: _noise(a), reads=NOISE, code=_noise)
    rows = {}
    for k in a.interps:
        mm = map_measures(benign[k].repeat(a.cfg.noise_samples, 1, 1, 1), noise["maps"][k])
        rows[k] = {
            "l1": summarize(mm["l1"]),
            "iou": summarize(mm["iou"]),
            "l1_q90": float(torch.quantile(mm["l1"].double(), 0.9))
            if mm["l1"].numel()
            else float("nan"),
        }
    return rows


def adv2_rows(
    a: Attacked, benign: dict[str, torch.Tensor], found: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """ADV² against each interpreter, judged by every interpreter (the transfer table);
    (rows, the sub-parts with the adversarial images and maps)."""
    rows, parts = {}, {}
    for k, g in a.interps.items():
        a.run.log(f"{a.name}: ADV² against {k} ({a.n_of[k]} images)")
        attack, settings = adv2_attack(g, a.cfg, a.cfg.seed, int(a.x.shape[-1]))
        part = a.cached(
            f"adv2-{k}",
            partial(_adv2, a, k, attack),
            reads=ADV2,
            code=_adv2,
            uses={"attack": attack.config()},  # every setting, the preset's included
        )
        parts[k] = part
        found[f"adv2-{k}"] = part.get("found", {})
        n = a.n_of[k]
        row = attack_row(
            a.model,
            part["x_adv"].to(a.run.device),
            a.t[:n],
            benign,
            part["maps"],
            a.batch,
            usable_pairs(found["benign"], found[f"adv2-{k}"]),
        )
        row["seconds"] = float(part["seconds"])
        row["seconds_per_image"] = float(part["seconds"]) / max(1, n)
        row["attack_record"] = {kk: summarize(v) for kk, v in part["record"].items()}
        row["settings"] = settings
        row["reused"] = a.reused(f"adv2-{k}")
        rows[k] = row
    return rows, parts


def attack_classifier(a: Attacked, res: dict[str, Any]) -> dict[str, Any]:
    """Benign maps, the noise baseline, PGD and ADV² of one classifier into ``res``; returns
    the sub-parts the countermeasures and figures need (benign, pgd, adv2)."""
    name, timings = a.name, res["timings"]
    t0 = time.perf_counter()
    a.run.log(f"{name}: benign maps and the ±ε noise baseline")
    part = a.cached("benign", lambda: _benign(a), reads=MAPS, code=_benign)
    found = {"benign": part.get("found", {})}
    benign = part["maps"]
    res["noise"] = noise_rows(a, benign)
    timings["benign"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    a.run.log(f"{name}: targeted PGD ({a.cfg.pgd_steps} steps)")
    pgd = a.cached(
        "pgd",
        lambda: _pgd(a),
        reads=PGD,
        code=_pgd,
        uses={"attack": pgd_attack(a.cfg, a.cfg.seed).config()},
    )
    found["pgd"] = pgd.get("found", {})
    res["pgd"] = attack_row(
        a.model,
        pgd["x_adv"].to(a.run.device),
        a.t,
        benign,
        pgd["maps"],
        a.batch,
        usable_pairs(found["benign"], found["pgd"]),
    )
    timings["pgd"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    adv_parts: dict[str, dict[str, Any]] = {}
    res["adv2"] = {}
    try:
        res["adv2"], adv_parts = adv2_rows(a, benign, found)
    except ImportError as err:
        res["adv2_skipped"] = f"ADV² unavailable in this installation ({err})"
        a.run.log(f"{name}: {res['adv2_skipped']}")
    timings["adv2"] = round(time.perf_counter() - t0, 2)
    # share of MASK maps for which MASK found a deletion (the others are all-zero maps)
    res["mask_found"] = {
        src: float(f["mask"].mean())
        for src, f in found.items()
        if "mask" in f and f["mask"].numel()
    }
    return {"benign": benign, "pgd": pgd, "adv2": adv_parts}
