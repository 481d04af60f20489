"""The two countermeasures of Zhang et al. (USENIX Security 2020) on one classifier: ensemble
interpretation, and adversarial interpretation (RTS^A: RTS retrained with ADV² examples).

Both are sub-parts of the run keyed like the attacks (:class:`Attacked`), plus the adversarial
images they reuse; RTS^A is a model of its own whose identity keys its evaluation.
"""

from __future__ import annotations

from typing import Any

import torch

from underfire.interpreters import Ensemble
from underfire.interpreters.rts import RTS
from underfire.studies.zhang2020.classifier import ADV2, Attacked, get_rts
from underfire.studies.zhang2020.measure import (
    adv2_attack,
    attack_measures,
    ensemble_members,
    map_measures,
    maps_of,
    random_targets,
    rts_data,
    run_attack,
    select_images,
    summarize,
)

__all__ = ["ensemble_rows", "rtsa_rows"]

ENSEMBLE = (*ADV2, "ensemble", "ensemble_eval")
RTSA = (*ADV2, "rtsa_train")


def _ensemble(
    a: Attacked, ens: Ensemble, members: list[str], n: int, adv: dict[str, Any], pgd: dict[str, Any]
) -> dict[str, Any]:
    model, batch = a.model, a.batch
    x, y, t = a.x[:n], a.y[:n], a.t[:n]
    benign = maps_of(ens, model, x, y, batch)
    on_member = {
        m: maps_of(ens, model, adv[m]["x_adv"][:n].to(x.device), None, batch)
        for m in members
        if m in adv
    }
    attack, _ = adv2_attack(ens, a.cfg, a.cfg.seed, int(x.shape[-1]))
    x_e, _ = run_attack(attack, model, x, y, t, batch)
    pairs = list(zip(members, ens.members, strict=True))
    member_maps = {m: maps_of(g, model, x_e, None, batch) for m, g in pairs}
    member_benign = {m: maps_of(g, model, x, y, batch) for m, g in pairs}
    return {
        "benign": benign,
        "on_member": on_member,
        "pgd": maps_of(ens, model, pgd["x_adv"][:n].to(x.device), None, batch),
        "x_ens": x_e,
        "ens_map": maps_of(ens, model, x_e, None, batch),
        "member_maps": member_maps,
        "member_benign": member_benign,
    }


def ensemble_rows(a: Attacked, parts: dict[str, Any]) -> dict[str, Any] | None:
    """Countermeasure 1: the ensemble's map under ADV² aimed at one member, and ADV² aimed at
    the whole ensemble (None when the classifier has < 2 members or ADV² did not run)."""
    members = ensemble_members(a.cfg, a.interps)
    adv, pgd = parts["adv2"], parts["pgd"]
    if len(members) < 2 or not adv:
        return None
    a.run.log(f"{a.name}: ensemble countermeasure ({' + '.join(members)})")
    ens = Ensemble([a.interps[m] for m in members])
    n = min(a.cfg.ensemble_eval or a.x.shape[0], a.x.shape[0])
    p = a.cached(
        "ensemble",
        lambda: _ensemble(a, ens, members, n, adv, pgd),
        reads=ENSEMBLE,
        code=_ensemble,
        uses={"adversarial": [pgd["x_adv"], *(adv[m]["x_adv"] for m in members if m in adv)]},
    )
    out: dict[str, Any] = {"members": members, "attack_on_member": {}}
    for m, emap in p["on_member"].items():
        k = emap.shape[0]
        own = map_measures(p["member_benign"][m][:k], adv[m]["maps"][m][:k])
        ens_mm = map_measures(p["benign"][:k], emap)
        out["attack_on_member"][m] = {
            "n": k,
            "member_l1": summarize(own["l1"]),
            "member_iou": summarize(own["iou"]),
            "ensemble_l1": summarize(ens_mm["l1"]),
            "ensemble_iou": summarize(ens_mm["iou"]),
        }
    pg = map_measures(p["benign"], p["pgd"])
    out["pgd"] = {"ensemble_l1": summarize(pg["l1"]), "ensemble_iou": summarize(pg["iou"])}
    s = attack_measures(a.model, p["x_ens"].to(a.run.device), a.t[:n], a.batch)
    e = map_measures(p["benign"], p["ens_map"])
    out["attack_on_ensemble"] = {
        "n": n,
        "success": summarize(s["success"]),
        "confidence": summarize(s["confidence"]),
        "ensemble_l1": summarize(e["l1"]),
        "ensemble_iou": summarize(e["iou"]),
        "member_l1": {
            m: summarize(map_measures(p["member_benign"][m], p["member_maps"][m])["l1"])
            for m in members
        },
    }
    return out


def _train_adv(a: Attacked) -> dict[str, Any]:
    """ADV²-RTS examples of training images (never the evaluation images)."""
    cfg, train, dev = a.cfg, a.run.state["train"], a.run.device
    num_classes = int(getattr(a.model, "num_classes", 0) or train.num_classes)
    pool = slice(max(0, len(train) - max(20 * cfg.rtsa_train, 500)), len(train))
    xs, ys, _ = select_images(
        a.model, train.x[pool].to(dev), train.y[pool].to(dev), cfg.rtsa_train, a.batch
    )
    ts = random_targets(ys, num_classes, cfg.seed + 1).to(dev)
    assert a.rts is not None
    attack, _ = adv2_attack(a.rts, cfg, cfg.seed + 1, int(a.x.shape[-1]))
    xa, _ = run_attack(attack, a.model, xs, ys, ts, a.batch)
    return {"x_adv": xa, "t": ts}


def _rtsa_eval(
    a: Attacked, rtsa: RTS, pgd: dict[str, Any], adv_rts: dict[str, Any]
) -> dict[str, Any]:
    model, batch, dev = a.model, a.batch, a.run.device
    b = maps_of(rtsa, model, a.x, a.y, batch)
    p_maps = maps_of(rtsa, model, pgd["x_adv"].to(dev), None, batch)
    old = maps_of(rtsa, model, adv_rts["x_adv"].to(dev), None, batch)
    attack, _ = adv2_attack(rtsa, a.cfg, a.cfg.seed, int(a.x.shape[-1]))
    xa, _ = run_attack(attack, model, a.x, a.y, a.t, batch)
    adv = maps_of(rtsa, model, xa, None, batch)
    return {"benign": b, "pgd": p_maps, "old_adv": old, "x_adv": xa, "adv": adv}


def _gap(b: torch.Tensor, pg: torch.Tensor, ad: torch.Tensor) -> dict[str, float]:
    mp, ma = map_measures(b, pg), map_measures(b, ad)
    return {
        "pgd_l1": summarize(mp["l1"]),
        "adv2_l1": summarize(ma["l1"]),
        "pgd_iou": summarize(mp["iou"]),
        "adv2_iou": summarize(ma["iou"]),
        "gap": summarize(mp["l1"]) - summarize(ma["l1"]),
    }


def rtsa_rows(a: Attacked, parts: dict[str, Any]) -> dict[str, Any] | None:
    """Countermeasure 2: RTS^A, RTS retrained on the clean training images plus ADV²-RTS
    examples; ADV² re-run against it and the PGD–ADV² L1 gap compared with RTS's (None when
    RTS, ADV² against it, or ``rtsa_train`` is missing)."""
    cfg, train = a.cfg, a.run.state["train"]
    benign, pgd, adv = parts["benign"], parts["pgd"], parts["adv2"]
    if a.rts is None or "rts" not in adv or cfg.rtsa_train <= 0 or train is None:
        return None
    a.run.log(
        f"{a.name}: RTS^A (RTS retrained with ADV² examples of {cfg.rtsa_train} training images)"
    )
    n_clean = min(len(train), 4000)
    tr = a.cached(
        "rtsa-train", lambda: _train_adv(a), reads=RTSA, code=_train_adv, uses={"train": train}
    )
    rtsa, info = get_rts(
        a.run,
        f"{a.name}/rtsa",
        a.model,
        rts_data(train.x[:n_clean], train.y[:n_clean], (tr["x_adv"], tr["t"])),
    )
    p = a.cached(
        "rtsa-eval",
        lambda: _rtsa_eval(a, rtsa, pgd, adv["rts"]),
        reads=ADV2,
        code=_rtsa_eval,
        uses={"rtsa": rtsa.network, "adversarial": [pgd["x_adv"], adv["rts"]["x_adv"]]},
    )
    s = attack_measures(a.model, p["x_adv"].to(a.run.device), a.t, a.batch)
    success = attack_measures(
        a.model, tr["x_adv"].to(a.run.device), tr["t"].to(a.run.device), a.batch
    )
    return {
        "training": info,
        "n_train_adv": int(tr["x_adv"].shape[0]),
        "train_adv_success": summarize(success["success"]),
        "rts": _gap(benign["rts"], pgd["maps"]["rts"], adv["rts"]["maps"]["rts"]),
        "rtsa": _gap(p["benign"], p["pgd"], p["adv"]),
        "rtsa_on_rts_attack_l1": summarize(map_measures(p["benign"], p["old_adv"])["l1"]),
        "adv2_vs_rtsa_success": summarize(s["success"]),
        "adv2_vs_rtsa_confidence": summarize(s["confidence"]),
    }
