"""report.md / report.html of the ADV² reproduction (Zhang et al., USENIX Security 2020), one
function per section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from underfire._version import __version__
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.claims import write_claims
from underfire.studies.zhang2020.claims import transfer_table
from underfire.studies.zhang2020.config import PAPER_CONFIDENCE, PAPER_SUCCESS, Zhang2020Config
from underfire.studies.zhang2020.figures import make_figures

__all__ = ["report"]

Results = dict[str, Any]


def _paper_rate(clf: str, interp: str) -> str:
    key = "cam" if interp == "gradcam" else interp
    if key not in PAPER_SUCCESS:
        return "—"
    r50, d169 = PAPER_SUCCESS[key]
    return f"{r50:.0%} / {d169:.0%}"


def report(run: StudyRun) -> None:
    """Figures, report.md and report.html of a finished run, into ``run.out``."""
    if run.out is None:
        raise ValueError("the report needs an output folder")
    cfg: Zhang2020Config = run.config
    results = run.results
    test = run.state.get("test")
    classes = test.classes if test is not None else None
    figs = make_figures(run.out / "figures", results, run.state.get("figure_tensors", {}), classes)
    r = Report(f"Reproduction of Zhang et al. (USENIX Security 2020), ADV², on {cfg.dataset}")
    _introduction(r, cfg, results)
    r.section("Findings of the paper")
    write_claims(r, results["claims"], "finding")
    _classifiers(r, results)
    _attacks(r, cfg, results, figs)
    _transfer(r, results, figs)
    _ensemble(r, results)
    _rtsa(r, cfg, results, figs)
    _samples(r, results, figs)
    timing = {c: v["timings"] for c, v in results["classifiers"].items()}
    reused = results.get("run", {}).get("reused", [])
    r.text(
        f"Run time: {results['timings']['total']:.1f} s in all; per classifier (s): "
        f"`{json.dumps(timing)}`. Parts reused from an earlier run in this folder (same "
        f"settings, classifiers, RTS networks and images): {', '.join(reused) or 'none'}."
    )
    r.write(run.out)


def _introduction(r: Report, cfg: Zhang2020Config, results: Results) -> None:
    r.text(
        f"underfire {__version__}, profile `{cfg.profile}`, seed {cfg.seed}, device `{results['device']}`. "
        f"Attacks: targeted, random target class ≠ true class, L∞ ε = {cfg.eps:g}, step {cfg.step_size:.4g}; "
        f"PGD baseline {cfg.pgd_steps} steps; ADV²: a targeted PGD warm start then the joint loss, with the "
        f"`{cfg.adv2_preset or 'by image size'}` preset of `underfire.attacks.adv2.PRESETS` and its step counts "
        f"× {cfg.adv2_scale:g} (per-interpreter settings in the table below). MASK: {cfg.mask_steps} iterations "
        f"on the first {cfg.mask_eval or cfg.n_eval} images; RTS trained {cfg.rts_steps} steps. "
        "Maps are [0, 1]-normalized; L1 = mean absolute difference between the benign and the "
        "adversarial map (the adversarial map explains the class predicted on the adversarial "
        "input); IoU = top-k % overlap averaged over k ∈ {5, 10, 20, 30, 40, 50} %. The benign-noise "
        "baseline is the map of the image under random ±ε signs: how much a map moves with no attack. "
        "Every number here is in `results.json` (parts reused from an earlier run in this folder "
        "are listed at the end); the configuration is in `config.json`."
    )
    if cfg.dataset == "imagenet" and any(w == "random" for w in cfg.weights.values()):
        r.text(
            "**Plumbing run: the ImageNet classifiers have random weights.** The numbers below test "
            "that the pipeline runs end to end on 224×224 images; they say nothing about ADV²."
        )
    if cfg.profile != "full":
        r.text(
            f"**Reduced setting (`{cfg.profile}` profile).** The paper attacks ImageNet ResNet-50 and "
            "DenseNet-169 with hundreds to thousands of steps per image; this run uses smaller data, "
            "networks trained briefly here and much shorter attacks. Compare the direction of each "
            "finding, not its exact numbers."
        )


def _classifiers(r: Report, results: Results) -> None:
    r.section("Classifiers")
    r.table(
        [
            {
                "classifier": c,
                "test accuracy": v["test_accuracy"],
                "test images": v.get("test_images", "—"),
                "attacked images": v["n_eval"],
                "which": v["images"],
                "interpreters": ", ".join(v["interpreters"]),
                "setup s": v["training"]["seconds"],
            }
            for c, v in results["classifiers"].items()
        ]
    )
    for c, v in results["classifiers"].items():
        for k, note in v.get("notes", {}).items():
            r.text(f"{c}, {k}: {note}.")
        if v.get("mask_found"):
            r.text(
                f"{c}, MASK found a deletion (a map that explains something; the others are all-zero "
                "maps) for: "
                + ", ".join(f"{src} {frac:.0%}" for src, frac in v["mask_found"].items())
                + " of the images. Where it found none the map is blank (all zeros); a pair with a "
                "blank map is left out of MASK's L1 and IoU (two blank maps would compare as "
                "identical) and counted in the map table's 'blank' column."
            )
        if "adv2_skipped" in v:
            r.text(f"{c}: {v['adv2_skipped']}; only the PGD baseline ran.")


def _or_dash(value: object) -> object:
    """A measured value, or "—" where there is none (no successful sample, an older run)."""
    return "—" if value is None else value


def _attacks(r: Report, cfg: Zhang2020Config, results: Results, figs: dict[str, Path]) -> None:
    r.section("PGD vs ADV² per classifier × interpreter (paper Tables 2–5, Figs. 4–7)")
    rows, map_rows = [], []
    for c, v in results["classifiers"].items():
        for k in v["pgd"]["maps"]:
            p, a = v["pgd"], v.get("adv2", {}).get(k)
            rows.append(
                {
                    "classifier": c,
                    "interpreter": k,
                    "PGD success": p["success"],
                    "ADV² success": a["success"] if a else "—",
                    "paper ADV² (R50 / D169)": _paper_rate(c, k),
                    "PGD conf. (successes)": _or_dash(p.get("confidence_successful")),
                    "ADV² conf. (successes)": _or_dash(
                        a.get("confidence_successful") if a else None
                    ),
                    "ADV² conf. (all)": a["confidence"] if a else "—",
                    "ADV² s/image": a["seconds_per_image"] if a else "—",
                }
            )
            map_rows.append(
                {
                    "classifier": c,
                    "interpreter": k,
                    "PGD L1": p["maps"][k]["l1"],
                    "ADV² L1": a["maps"][k]["l1"] if a else "—",
                    "noise L1": v["noise"][k]["l1"],
                    "blank (PGD / ADV²)": f"{p['maps'][k].get('blank', 0)} / "
                    + (str(a["maps"][k].get("blank", 0)) if a else "—"),
                    "PGD IoU": p["maps"][k]["iou"],
                    "ADV² IoU": a["maps"][k]["iou"] if a else "—",
                    "noise IoU": v["noise"][k]["iou"],
                }
            )
    r.text(
        "Attack success and mean target confidence, over the successful samples (as the paper "
        "reports it) and, for ADV², over all samples:"
    )
    r.table(rows)
    r.text(
        "Maps: L1 and top-k IoU between the benign and the adversarial map of each interpreter "
        "(noise: the benign-noise baseline, no attack):"
    )
    r.table(map_rows)
    r.text(
        f"The paper (ImageNet) reports PGD 100 % and ADV² success as in the 'paper' column, with mean "
        f"target confidence ≥ {PAPER_CONFIDENCE:g}. Differences in setting: dataset and resolution "
        f"({cfg.dataset} here), classifiers trained here ("
        + ", ".join(f"{c}: {cfg.steps_for(c)} steps" for c in cfg.classifiers)
        + ") rather than "
        "pretrained ImageNet models, and far fewer attack iterations in the reduced profiles."
    )
    r.figure(
        figs["metrics"], "PGD (grey) vs ADV² (red) per interpreter; blue ticks: benign ±ε noise"
    )
    _settings(r, results)


def _settings(r: Report, results: Results) -> None:
    settings = [
        {
            "classifier": c,
            "interpreter": k,
            **{
                kk: (", ".join(f"{x:g}" for x in vv) if isinstance(vv, list) else vv)
                for kk, vv in a["settings"].items()
            },
            "record: success": a["attack_record"].get("success", "—"),
            "record: L1 to target map": a["attack_record"].get("l1", "—"),
            "record: IoU": a["attack_record"].get("iou", "—"),
        }
        for c, v in results["classifiers"].items()
        for k, a in v.get("adv2", {}).items()
    ]
    if settings:
        r.text(
            "ADV² settings as run, and the attack's own per-sample record averaged (L1/IoU to its target map):"
        )
        r.table(settings)


def _transfer(r: Report, results: Results, figs: dict[str, Path]) -> None:
    r.section("Transfer across interpreters")
    r.text(
        "Rows: the interpreter ADV² targeted (PGD: none); columns: the interpreter whose map is "
        "compared with its benign map. Values: mean L1 (IoU in parentheses). A low diagonal and "
        "high off-diagonal entries mean the attack does not transfer."
    )
    for c, v in results["classifiers"].items():
        table = transfer_table(v)
        r.text(f"**{c}**")
        r.table(
            [
                {"attack": "PGD" if a == "pgd" else f"ADV² → {a}"}
                | {b: f"{m['l1']:.3f} ({m['iou']:.2f})" for b, m in row.items()}
                for a, row in table.items()
            ]
        )
    r.figure(
        figs["transfer"],
        "L1 between benign and adversarial maps, attack target × judging interpreter",
    )


def _ensemble(r: Report, results: Results) -> None:
    r.section("Countermeasure 1: ensemble interpretation")
    any_ens = False
    for c, v in results["classifiers"].items():
        e = v.get("ensemble")
        if not e:
            continue
        any_ens = True
        r.text(f"**{c}**: ensemble of {' + '.join(e['members'])} (mean of normalized maps).")
        rows = [
            {
                "attack": f"ADV² → {m}",
                "attacked member's L1": a["member_l1"],
                "ensemble L1": a["ensemble_l1"],
                "ensemble IoU": a["ensemble_iou"],
                "success": v["adv2"][m]["success"],
            }
            for m, a in e["attack_on_member"].items()
        ]
        w = e["attack_on_ensemble"]
        rows.append(
            {
                "attack": "ADV² → ensemble",
                "attacked member's L1": "; ".join(
                    f"{m} {x:.3f}" for m, x in w["member_l1"].items()
                ),
                "ensemble L1": w["ensemble_l1"],
                "ensemble IoU": w["ensemble_iou"],
                "success": w["success"],
            }
        )
        rows.append(
            {
                "attack": "PGD",
                "attacked member's L1": "—",
                "ensemble L1": e["pgd"]["ensemble_l1"],
                "ensemble IoU": e["pgd"]["ensemble_iou"],
                "success": v["pgd"]["success"],
            }
        )
        r.table(rows)
    if not any_ens:
        r.text("Not evaluated (needs ADV² and at least two ensemble members).")


def _rtsa(r: Report, cfg: Zhang2020Config, results: Results, figs: dict[str, Path]) -> None:
    r.section("Countermeasure 2: adversarial interpretation (RTS^A)")
    any_a = False
    for c, v in results["classifiers"].items():
        a = v.get("rtsa")
        if not a:
            continue
        any_a = True
        r.text(
            f"**{c}**: RTS^A = RTS retrained ({cfg.rts_steps} steps) on the clean training images plus "
            f"{a['n_train_adv']} ADV²-RTS examples of training images (attack success on them "
            f"{a['train_adv_success']:.0%}), labelled with their target class. ADV² is then re-run against "
            f"RTS^A on the evaluation images (success {a['adv2_vs_rtsa_success']:.0%}, confidence "
            f"{a['adv2_vs_rtsa_confidence']:.3f}). RTS^A's L1 on the examples crafted against RTS: "
            f"{a['rtsa_on_rts_attack_l1']:.3f}."
        )
        r.table(
            [
                {"interpreter": "RTS", **{k: x for k, x in a["rts"].items()}},
                {"interpreter": "RTS^A", **{k: x for k, x in a["rtsa"].items()}},
            ]
        )
    if not any_a:
        r.text("Not evaluated (needs ADV² and RTS).")
    if "countermeasures" in figs:
        r.figure(figs["countermeasures"], "Left: ensemble interpretation; right: RTS vs RTS^A")


def _samples(r: Report, results: Results, figs: dict[str, Path]) -> None:
    r.section("Samples")
    for c in results["classifiers"]:
        key = f"samples_{c}"
        if key in figs:
            r.figure(
                figs[key],
                f"{c}: benign, PGD and ADV² images (top rows) and their maps (bottom rows), per interpreter",
            )
