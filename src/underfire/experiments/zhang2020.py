"""Reproduction of Zhang, Wang, Shen, Ji, Luo and Wang, "Interpretable Deep Learning under
Fire" (USENIX Security 2020): ADV² fools a classifier and its interpreter together.

For every classifier (CIFAR-10: a ResNet and a DenseNet, the paper's two families; MNIST and
digits: the Ross CNN; ImageNet: ResNet-50/DenseNet-169 from user-supplied weights) and every
interpreter (GRAD, CAM — Grad-CAM without a GAP head —, MASK, RTS, and cheap others), the
targeted PGD baseline and ADV² are compared on correctly classified test images with random
target classes: attack success, target confidence, L1 distance and top-k IoU between the
benign and adversarial maps. Then: a transfer table (ADV² aimed at interpreter A, judged by
interpreter B), a benign-noise baseline (how much maps move under a random ±ε perturbation),
the two countermeasures of the paper (ensemble interpretation; RTS^A, RTS retrained with
ADV² examples), and each finding decided by a stated rule
(:mod:`underfire.experiments.zhang2020_claims`).

Outputs in ``out``: ``config.json``, ``results.json``, ``figures/*.png``, ``report.md`` and
``report.html``; trained classifiers and RTS networks in ``out/models``, finished attacks in
``out/parts`` (a second run reuses both and recomputes nothing that is done).

>>> from underfire.experiments.zhang2020 import run_zhang2020
>>> results = run_zhang2020("digits", profile="quick", out="runs/zhang2020-digits")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire._version import __version__
from underfire.core import io as _io
from underfire.data import ImageDataset, ImageFolderDataset, load_dataset
from underfire.experiments.zhang2020_config import Zhang2020Config, resolve_config
from underfire.experiments.zhang2020_eval import (
    PartStore,
    adv2_attack,
    attack_measures,
    batched,
    build_interpreters,
    ensemble_members,
    map_measures,
    maps_of,
    pgd_attack,
    random_targets,
    run_attack,
    summarize,
)
from underfire.interpreters import Ensemble
from underfire.interpreters.base import Interpreter
from underfire.interpreters.rts import RTS, RTSConfig, train_rts
from underfire.models import create_model, model_for_dataset
from underfire.studies.claims import prepare_output
from underfire.train import CrossEntropy, TrainConfig, Trainer, evaluate, seed_everything

__all__ = ["load_data", "run_zhang2020", "train_classifier"]

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- data & models


def load_data(
    cfg: Zhang2020Config, root: str | Path | None = None
) -> tuple[ImageDataset | None, ImageDataset | None, ImageDataset]:
    """(train, val, test). ImageNet: no training here; the sample's images are the test set,
    and the images after the attacked ones train RTS (train = those, val = None)."""
    if cfg.dataset == "imagenet":
        ds = load_dataset("imagenet", "test", root, seed=cfg.seed)
        n_needed = cfg.n_eval + max(cfg.rts_batch, 16)
        if not isinstance(ds, ImageFolderDataset):
            raise TypeError(f"expected the ImageNet sample as image files, got {type(ds).__name__}")
        x, y = ds.tensors(min(len(ds), n_needed))
        info = ds.info
        test = ImageDataset(x[: cfg.n_eval].contiguous(), y[: cfg.n_eval], info, "test")
        rest = x[cfg.n_eval :]
        train = (
            ImageDataset(rest.contiguous(), y[cfg.n_eval :], info, "train") if len(rest) else None
        )
        return train, None, test
    splits = []
    for split in ("train", "val", "test"):
        ds = load_dataset(cfg.dataset, split, root, seed=cfg.seed)
        if not isinstance(ds, ImageDataset):
            raise TypeError(f"{cfg.dataset} is not an in-memory dataset")
        splits.append(ds)
    train, val, test = splits
    if cfg.n_train is not None and cfg.n_train < len(train):
        train = train.subset(cfg.n_train)
    return train, val, test


def train_classifier(
    cfg: Zhang2020Config,
    name: str,
    train: ImageDataset | None,
    val: ImageDataset | None,
    out: Path,
    *,
    device: torch.device,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or resume from ``out/models/NAME.pt``) one classifier; ImageNet loads weights."""
    t0 = time.perf_counter()
    if cfg.dataset == "imagenet":
        w = cfg.weights[name]
        model = create_model(name, weights=None if w == "random" else w)
        info: dict[str, Any] = {"weights": w}
    else:
        assert train is not None
        seed_everything(cfg.seed)
        model = model_for_dataset(name, cfg.dataset, **cfg.model_kwargs.get(name, {}))
        cifar = name != "ross-cnn"
        tcfg = TrainConfig(
            steps=cfg.train_steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            optimizer="sgd" if cifar else "adam",
            weight_decay=5e-4 if cifar else 0.0,
            lr_schedule="cosine" if cifar else "constant",
            seed=cfg.seed,
            checkpoint_every=max(50, cfg.train_steps // 20),
        )
        ckpt = out / "models" / f"{name}.pt"
        Trainer(
            model,
            CrossEntropy(),
            tcfg,
            device=device,
            checkpoint=ckpt,
            progress=progress,
            meta={"dataset": cfg.dataset, "experiment": "zhang2020", "model": name},
        ).fit(train, val.subset(1000) if val is not None and len(val) > 1000 else val)
        info = {"checkpoint": str(ckpt.relative_to(out)), "steps": cfg.train_steps}
    model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return model, info


def _rts_data(
    train: ImageDataset, n_clean: int, extra: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = train.x[:n_clean], train.y[:n_clean]
    if extra is None:
        return x, y
    # RTS samples its batches uniformly: repeat the few adversarial examples so that they make
    # up a quarter of the training set of RTS^A.
    xa, ya = extra
    reps = max(1, round(n_clean / 3 / max(1, xa.shape[0])))
    return torch.cat([x, xa.repeat(reps, 1, 1, 1)]), torch.cat([y, ya.repeat(reps)])


def get_rts(
    cfg: Zhang2020Config,
    model: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    path: Path,
    device: torch.device,
    progress: bool,
) -> tuple[RTS, dict[str, Any]]:
    """Train the RTS masking network for ``model`` (or load it from ``path``)."""
    t0 = time.perf_counter()
    if path.exists():
        try:
            rts = RTS.load(path, device)
            if rts.meta.get("fingerprint_steps") == cfg.rts_steps:
                return rts, {"seconds": 0.0, "reused": True}
        except Exception:  # unreadable: train again
            pass
    rts, history = train_rts(
        model,
        data,
        RTSConfig(steps=cfg.rts_steps, batch_size=cfg.rts_batch, seed=cfg.seed),
        device=device,
        progress=progress,
    )
    rts.meta["fingerprint_steps"] = cfg.rts_steps
    rts.save(path)
    return rts, {
        "seconds": round(time.perf_counter() - t0, 2),
        "final_loss": history[-1]["loss"] if history else None,
        "reused": False,
    }


def _select(
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


# ----------------------------------------------------------------------------- one classifier


def _measure(
    model: nn.Module,
    x_adv: torch.Tensor,
    t: torch.Tensor,
    benign: dict[str, torch.Tensor],
    maps: dict[str, torch.Tensor],
    batch: int,
) -> dict[str, Any]:
    """Success, confidence and per-interpreter map measures of one set of adversarial inputs."""
    a = attack_measures(model, x_adv, t, batch)
    row: dict[str, Any] = {
        "n": int(x_adv.shape[0]),
        "success": summarize(a["success"]),
        "confidence": summarize(a["confidence"]),
        "maps": {},
    }
    for name, m in maps.items():
        mm = map_measures(benign[name], m)
        row["maps"][name] = {
            "n": int(mm["l1"].numel()),
            "l1": summarize(mm["l1"]),
            "iou": summarize(mm["iou"]),
            "l1_all": mm["l1"].tolist(),
        }
    return row


def evaluate_classifier(
    cfg: Zhang2020Config,
    name: str,
    model: nn.Module,
    test: ImageDataset,
    train: ImageDataset | None,
    out: Path,
    *,
    device: torch.device,
    progress: bool,
    log: Log,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every measurement on one classifier; (results, tensors for the figures)."""
    store = PartStore(out / "parts" / name, cfg)
    num_classes = int(getattr(model, "num_classes", 0) or test.num_classes)
    res: dict[str, Any] = {"timings": {}}
    t_all = time.perf_counter()

    pool = slice(
        0, max(20 * cfg.n_eval, 500)
    )  # enough candidates without classifying the whole test set
    x, y, chosen = _select(
        model, test.x[pool].to(device), test.y[pool].to(device), cfg.n_eval, cfg.eval_batch
    )
    t = random_targets(y, num_classes, cfg.seed).to(device)
    res["n_eval"], res["images"] = int(x.shape[0]), chosen
    batch, size = cfg.eval_batch, int(x.shape[-1])

    # RTS (trained on the training images, used as an interpreter and as an ensemble member)
    rts = None
    if "rts" in cfg.interpreters and train is not None and len(train) >= 2:
        log(f"{name}: RTS ({cfg.rts_steps} steps)")
        n_clean = min(len(train), 4000)
        rts, res["rts_training"] = get_rts(
            cfg,
            model,
            _rts_data(train, n_clean),
            out / "models" / f"{name}.rts.pt",
            device,
            progress,
        )
    interps, notes = build_interpreters(cfg, model, x, rts)
    res["interpreters"], res["notes"] = list(interps), notes
    n_of = {
        k: (min(cfg.mask_eval or x.shape[0], x.shape[0]) if k == "mask" else x.shape[0])
        for k in interps
    }
    res["n_per_interpreter"] = n_of

    def all_maps(
        x_in: torch.Tensor, target: torch.Tensor | None, n_max: int | None = None
    ) -> dict[str, torch.Tensor]:
        maps = {}
        last_found.clear()
        for k, g in interps.items():
            n = min(n_of[k], x_in.shape[0] if n_max is None else n_max)
            flags: list[torch.Tensor] = []
            maps[k] = maps_of(
                g, model, x_in[:n], None if target is None else target[:n], batch, flags
            )
            if flags:
                # MASK flags the maps where it found no deletion (all-zero maps)
                last_found[k] = torch.cat(flags).float()
        return maps

    last_found: dict[str, torch.Tensor] = {}

    # benign maps (the images' own class) and a benign-noise baseline (random ±ε signs)
    t0 = time.perf_counter()
    log(f"{name}: benign maps and the ±ε noise baseline")
    part, _ = store.cached("benign", lambda: {"maps": all_maps(x, y), "found": dict(last_found)})
    found = {"benign": part.get("found", {})}
    benign = part["maps"]

    def noise_part() -> dict[str, Any]:
        gen = torch.Generator().manual_seed(cfg.seed + 7)
        xs: list[torch.Tensor] = []
        maps: dict[str, list[torch.Tensor]] = {k: [] for k in interps}
        for _ in range(cfg.noise_samples):
            sign = torch.randint(0, 2, x.shape, generator=gen).to(x) * 2 - 1
            xn = (x + cfg.eps * sign).clamp(0, 1)
            for k, m in all_maps(xn, y).items():
                maps[k].append(m)
            xs.append(xn)
        return {"x": xs[0], "maps": {k: torch.cat(v) for k, v in maps.items()}}

    noise, _ = store.cached("noise", noise_part)
    rep = {k: benign[k].repeat(cfg.noise_samples, 1, 1, 1) for k in interps}
    res["noise"] = {}
    for k in interps:
        mm = map_measures(rep[k], noise["maps"][k])
        res["noise"][k] = {
            "l1": summarize(mm["l1"]),
            "iou": summarize(mm["iou"]),
            "l1_q90": float(torch.quantile(mm["l1"].double(), 0.9))
            if mm["l1"].numel()
            else float("nan"),
        }
    res["timings"]["benign"] = round(time.perf_counter() - t0, 2)

    # PGD alone: the baseline
    t0 = time.perf_counter()
    log(f"{name}: targeted PGD ({cfg.pgd_steps} steps)")

    def pgd_part() -> dict[str, Any]:
        x_adv, _ = run_attack(pgd_attack(cfg, cfg.seed), model, x, y, t, batch)
        return {"x_adv": x_adv, "maps": all_maps(x_adv, None), "found": dict(last_found)}

    pgd, _ = store.cached("pgd", pgd_part)
    found["pgd"] = pgd.get("found", {})
    res["pgd"] = _measure(model, pgd["x_adv"].to(device), t, benign, pgd["maps"], batch)
    res["timings"]["pgd"] = round(time.perf_counter() - t0, 2)

    # ADV² against each interpreter; every interpreter judges every attack (transfer table)
    res["adv2"], adv_parts = {}, {}
    t0 = time.perf_counter()
    try:
        for k, g in interps.items():
            log(f"{name}: ADV² against {k} ({n_of[k]} images)")

            def adv_part(k: str = k, g: Interpreter = g) -> dict[str, Any]:
                n = n_of[k]
                attack, _ = adv2_attack(g, cfg, cfg.seed, size)
                ta = time.perf_counter()
                x_adv, records = run_attack(attack, model, x[:n], y[:n], t[:n], batch)
                return {
                    "x_adv": x_adv,
                    "maps": all_maps(x_adv, None, n),
                    "found": dict(last_found),
                    "seconds": torch.tensor(time.perf_counter() - ta),
                    "record": _records(records),
                }

            part, reused = store.cached(f"adv2-{k}", adv_part)
            adv_parts[k] = part
            found[f"adv2-{k}"] = part.get("found", {})
            row = _measure(
                model, part["x_adv"].to(device), t[: n_of[k]], benign, part["maps"], batch
            )
            row["seconds"] = float(part["seconds"])
            row["seconds_per_image"] = float(part["seconds"]) / max(1, n_of[k])
            row["attack_record"] = {kk: summarize(v) for kk, v in part["record"].items()}
            row["settings"] = adv2_attack(g, cfg, cfg.seed, size)[1]
            row["reused"] = reused
            res["adv2"][k] = row
    except ImportError as err:
        res["adv2_skipped"] = f"ADV² unavailable in this installation ({err})"
        log(f"{name}: {res['adv2_skipped']}")
    res["timings"]["adv2"] = round(time.perf_counter() - t0, 2)
    # share of MASK maps for which MASK found a deletion (the others are all-zero maps)
    res["mask_found"] = {
        src: float(f["mask"].mean())
        for src, f in found.items()
        if "mask" in f and f["mask"].numel()
    }

    # countermeasure 1: ensemble interpretation
    members = ensemble_members(cfg, interps)
    if len(members) >= 2 and adv_parts:
        t0 = time.perf_counter()
        log(f"{name}: ensemble countermeasure ({' + '.join(members)})")
        ens = Ensemble([interps[m] for m in members])
        ne = min(cfg.ensemble_eval or x.shape[0], x.shape[0])
        res["ensemble"] = _ensemble(
            cfg, store, model, ens, members, x[:ne], y[:ne], t[:ne], adv_parts, pgd, batch
        )
        res["timings"]["ensemble"] = round(time.perf_counter() - t0, 2)

    # countermeasure 2: adversarial interpretation (RTS^A)
    if rts is not None and "rts" in adv_parts and cfg.rtsa_train > 0 and train is not None:
        t0 = time.perf_counter()
        log(f"{name}: RTS^A (RTS retrained with ADV² examples of {cfg.rtsa_train} training images)")
        res["rtsa"] = _rtsa(
            cfg,
            store,
            name,
            model,
            rts,
            train,
            x,
            y,
            t,
            benign,
            pgd,
            adv_parts,
            out,
            device,
            progress,
            batch,
        )
        res["timings"]["rtsa"] = round(time.perf_counter() - t0, 2)
    res["timings"]["total"] = round(time.perf_counter() - t_all, 2)

    n_fig = min(cfg.n_figure, x.shape[0])
    tensors = {
        "x": x[:n_fig].cpu(),
        "y": y[:n_fig].cpu(),
        "t": t[:n_fig].cpu(),
        "benign": {k: v[:n_fig] for k, v in benign.items()},
        "pgd_x": pgd["x_adv"][:n_fig],
        "pgd_maps": {k: v[:n_fig] for k, v in pgd["maps"].items()},
        "adv2": {k: (p["x_adv"][:n_fig], p["maps"][k][:n_fig]) for k, p in adv_parts.items()},
    }
    return res, tensors


def _records(records: list[Any]) -> dict[str, torch.Tensor]:
    """Concatenate the attack's per-sample result records (dicts or objects of tensors)."""
    merged: dict[str, list[torch.Tensor]] = {}
    for r in records:
        if r is None:
            continue
        items = r.items() if isinstance(r, dict) else vars(r).items()
        for k, v in items:
            if isinstance(v, torch.Tensor) and v.dim() == 1:
                merged.setdefault(k, []).append(v.detach().float().cpu())
    return {k: torch.cat(v) for k, v in merged.items()}


def _ensemble(
    cfg: Zhang2020Config,
    store: PartStore,
    model: nn.Module,
    ens: Ensemble,
    members: list[str],
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    adv_parts: dict[str, dict[str, Any]],
    pgd: dict[str, Any],
    batch: int,
) -> dict[str, Any]:
    n = x.shape[0]

    def part() -> dict[str, Any]:
        benign = maps_of(ens, model, x, y, batch)
        on_member = {
            m: maps_of(ens, model, adv_parts[m]["x_adv"][:n].to(x.device), None, batch)
            for m in members
            if m in adv_parts
        }
        attack, _ = adv2_attack(ens, cfg, cfg.seed, int(x.shape[-1]))
        x_e, _ = run_attack(attack, model, x, y, t, batch)
        member_maps = {
            m: maps_of(g, model, x_e, None, batch)
            for m, g in zip(members, ens.members, strict=True)
        }
        member_benign = {
            m: maps_of(g, model, x, y, batch) for m, g in zip(members, ens.members, strict=True)
        }
        return {
            "benign": benign,
            "on_member": on_member,
            "pgd": maps_of(ens, model, pgd["x_adv"][:n].to(x.device), None, batch),
            "x_ens": x_e,
            "ens_map": maps_of(ens, model, x_e, None, batch),
            "member_maps": member_maps,
            "member_benign": member_benign,
        }

    p, _ = store.cached("ensemble", part)
    out: dict[str, Any] = {"members": members, "attack_on_member": {}}
    for m, emap in p["on_member"].items():
        n = emap.shape[0]
        own = map_measures(p["member_benign"][m][:n], adv_parts[m]["maps"][m][:n])
        ens_mm = map_measures(p["benign"][:n], emap)
        out["attack_on_member"][m] = {
            "n": n,
            "member_l1": summarize(own["l1"]),
            "member_iou": summarize(own["iou"]),
            "ensemble_l1": summarize(ens_mm["l1"]),
            "ensemble_iou": summarize(ens_mm["iou"]),
        }
    pg = map_measures(p["benign"], p["pgd"])
    out["pgd"] = {"ensemble_l1": summarize(pg["l1"]), "ensemble_iou": summarize(pg["iou"])}
    a = attack_measures(model, p["x_ens"].to(x.device), t, batch)
    e = map_measures(p["benign"], p["ens_map"])
    out["attack_on_ensemble"] = {
        "n": int(x.shape[0]),
        "success": summarize(a["success"]),
        "confidence": summarize(a["confidence"]),
        "ensemble_l1": summarize(e["l1"]),
        "ensemble_iou": summarize(e["iou"]),
        "member_l1": {
            m: summarize(map_measures(p["member_benign"][m], p["member_maps"][m])["l1"])
            for m in members
        },
    }
    return out


def _rtsa(
    cfg: Zhang2020Config,
    store: PartStore,
    name: str,
    model: nn.Module,
    rts: RTS,
    train: ImageDataset,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    benign: dict[str, torch.Tensor],
    pgd: dict[str, Any],
    adv_parts: dict[str, dict[str, Any]],
    out: Path,
    device: torch.device,
    progress: bool,
    batch: int,
) -> dict[str, Any]:
    num_classes = int(getattr(model, "num_classes", 0) or train.num_classes)

    def train_adv() -> dict[str, Any]:
        # ADV²-RTS examples of training images (never the evaluation images)
        pool = slice(max(0, len(train) - max(20 * cfg.rtsa_train, 500)), len(train))
        xs, ys, _ = _select(
            model, train.x[pool].to(device), train.y[pool].to(device), cfg.rtsa_train, batch
        )
        ts = random_targets(ys, num_classes, cfg.seed + 1).to(device)
        attack, _ = adv2_attack(rts, cfg, cfg.seed + 1, int(x.shape[-1]))
        xa, _ = run_attack(attack, model, xs, ys, ts, batch)
        return {"x_adv": xa, "t": ts}

    tr, _ = store.cached("rtsa-train", train_adv)
    n_clean = min(len(train), 4000)
    rtsa, info = get_rts(
        cfg,
        model,
        _rts_data(train, n_clean, (tr["x_adv"], tr["t"])),
        out / "models" / f"{name}.rtsa.pt",
        device,
        progress,
    )

    def evaluate_part() -> dict[str, Any]:
        b = maps_of(rtsa, model, x, y, batch)
        p_maps = maps_of(rtsa, model, pgd["x_adv"].to(device), None, batch)
        old = maps_of(rtsa, model, adv_parts["rts"]["x_adv"].to(device), None, batch)
        attack, _ = adv2_attack(rtsa, cfg, cfg.seed, int(x.shape[-1]))
        xa, _ = run_attack(attack, model, x, y, t, batch)
        return {
            "benign": b,
            "pgd": p_maps,
            "old_adv": old,
            "x_adv": xa,
            "adv": maps_of(rtsa, model, xa, None, batch),
        }

    p, _ = store.cached("rtsa-eval", evaluate_part)
    a = attack_measures(model, p["x_adv"].to(device), t, batch)

    def gap(b: torch.Tensor, pg: torch.Tensor, ad: torch.Tensor) -> dict[str, float]:
        mp, ma = map_measures(b, pg), map_measures(b, ad)
        return {
            "pgd_l1": summarize(mp["l1"]),
            "adv2_l1": summarize(ma["l1"]),
            "pgd_iou": summarize(mp["iou"]),
            "adv2_iou": summarize(ma["iou"]),
            "gap": summarize(mp["l1"]) - summarize(ma["l1"]),
        }

    return {
        "training": info,
        "n_train_adv": int(tr["x_adv"].shape[0]),
        "train_adv_success": summarize(
            attack_measures(model, tr["x_adv"].to(device), tr["t"].to(device), batch)["success"]
        ),
        "rts": gap(benign["rts"], pgd["maps"]["rts"], adv_parts["rts"]["maps"]["rts"]),
        "rtsa": gap(p["benign"], p["pgd"], p["adv"]),
        "rtsa_on_rts_attack_l1": summarize(map_measures(p["benign"], p["old_adv"])["l1"]),
        "adv2_vs_rtsa_success": summarize(a["success"]),
        "adv2_vs_rtsa_confidence": summarize(a["confidence"]),
    }


# ----------------------------------------------------------------------------- the experiment


def run_zhang2020(
    dataset: str = "cifar10",
    *,
    profile: str = "full",
    out: str | Path = "runs/zhang2020",
    data_root: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    log: Log = lambda _m: None,
    config: Zhang2020Config | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run the whole reproduction and write results, figures and the report to ``out``.

    Args:
        dataset: cifar10, mnist, digits or imagenet (ImageNet needs ``weights``).
        profile: "full" (the paper's settings; GPU), "cpu", "quick" or "test"
            (see :mod:`underfire.experiments.zhang2020_config`).
        out: output folder.
        data_root: dataset folder (None: the loader's default).
        device: torch device.
        progress: progress bars for the CLI.
        log: receives one-line progress messages.
        config: a complete configuration (overrides ``dataset``/``profile``).
        **overrides: fields of :class:`Zhang2020Config` replacing the profile's values.

    Returns:
        The results dict (also written to ``out/results.json``).
    """
    from underfire.experiments import zhang2020_figures as figs
    from underfire.experiments.zhang2020_claims import evaluate_claims
    from underfire.experiments.zhang2020_report import write_report

    t_start = time.perf_counter()
    cfg = config or resolve_config(dataset, profile, **overrides)
    out, device = prepare_output(out, cfg, device)
    seed_everything(cfg.seed)
    train, val, test = load_data(cfg, data_root)
    log(
        f"{cfg.dataset}: {len(train) if train is not None else 0} train / {len(test)} test images, profile {cfg.profile}"
    )
    results: dict[str, Any] = {
        "config": cfg.to_dict(),
        "underfire_version": __version__,
        "device": str(device),
        "classifiers": {},
    }
    tensors: dict[str, Any] = {}
    for name in cfg.classifiers:
        log(
            f"classifier {name}: training ({cfg.train_steps} steps)"
            if cfg.dataset != "imagenet"
            else f"classifier {name}: weights {cfg.weights[name]}"
        )
        model, info = train_classifier(cfg, name, train, val, out, device=device, progress=progress)
        entry: dict[str, Any] = {"training": info}
        scored = test.subset(cfg.n_test) if cfg.n_test else test
        entry["test_accuracy"] = evaluate(model, scored, device=device)["accuracy"]
        entry["test_images"] = len(scored)
        log(f"{name}: test accuracy {entry['test_accuracy']:.3f}")
        res, tensors[name] = evaluate_classifier(
            cfg, name, model, test, train, out, device=device, progress=progress, log=log
        )
        entry |= res
        results["classifiers"][name] = entry
    results["claims"] = evaluate_claims(results)
    log("figures and report")
    fig_paths = figs.make_figures(out / "figures", results, tensors, test.classes)
    results["timings"] = {"total": round(time.perf_counter() - t_start, 2)}
    _io.write_json(out / "results.json", results)
    write_report(out, cfg, results, fig_paths)
    return results
