"""Demo section: interpretation maps of the demo classifier, a trained RTS and map metrics.

The demo model is a ross-cnn on 8×8 digits: it has no global-average-pooling head, so CAM
does not apply and Grad-CAM (on its last conv block, 4×4) stands in; MASK uses a 4×4 coarse
mask on these inputs. RTS is trained on the demo data within a time budget.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from underfire.interpreters import (
    Ensemble,
    GradCAM,
    IntegratedGradients,
    Interpreter,
    Mask,
    RTSConfig,
    Saliency,
    SmoothGrad,
    evaluate_rts,
    train_rts,
)
from underfire.metrics import l1_distance, spearman, topk_iou
from underfire.plotting import save_grid
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.demo.sections import cached_section, one_thread, section_part

__all__ = ["PARTS", "evaluation", "write"]

N_IMAGES = 8
NOISE = 0.03  # uniform input noise for the stability measure (maps of x vs x + δ, ‖δ‖∞ ≤ 0.03)
RTS_CHECKPOINT = "rts.pt"


def evaluation(run: StudyRun) -> dict[str, Any]:
    """Maps of every interpreter, their agreement and stability, and a trained RTS (saved as
    ``OUT/rts.pt``: it is trained here, for this model, and is part of this result)."""
    with one_thread(run):
        return _evaluation(run)


def _evaluation(run: StudyRun) -> dict[str, Any]:
    model, device, seed = run.state["model"].eval(), run.device, run.config.seed
    train, test = run.state["train"], run.state["test"]
    x = test.x[:N_IMAGES].to(device)
    y = test.y[:N_IMAGES].to(device)
    with torch.no_grad():
        probs = model(x).softmax(1)
    conf, pred = probs.max(1)

    run.log("interpreters: training RTS")
    # a fixed number of steps, no wall-clock cap: a cap made the demo's RTS numbers depend on
    # how busy the machine was (189 of 250 steps under load)
    rts_cfg = RTSConfig(steps=250, batch_size=32, width=32, area=2.0, lr=2e-3, seed=seed)
    rts, history = train_rts(model, train, rts_cfg, device=device)
    if run.out is not None:
        rts.save(run.out / RTS_CHECKPOINT)
    rts_stats = evaluate_rts(rts, model, test.x.to(device), test.y.to(device))

    interpreters: dict[str, Interpreter] = {
        "grad": Saliency(),
        "smoothgrad": SmoothGrad(samples=16, seed=seed),
        "ig": IntegratedGradients(steps=16),
        "gradcam": GradCAM(),
        "mask": Mask(steps=100, seed=seed),
        "rts": rts,
        "ensemble": Ensemble([Saliency(), GradCAM(), Mask(steps=100, seed=seed)]),
    }
    gen = torch.Generator().manual_seed(seed)
    noise = ((torch.rand(x.shape, generator=gen) * 2 - 1) * NOISE).to(device)
    x_noisy = (x + noise).clamp(0, 1)
    maps: dict[str, torch.Tensor] = {}
    rows = []
    mask_record: dict[str, Any] = {}
    for name, interp in interpreters.items():
        t0 = time.perf_counter()
        maps[name] = interp(model, x, pred)
        seconds = time.perf_counter() - t0
        if isinstance(interp, Mask) and interp.last_result is not None:
            found = interp.last_result
            mask_record = {
                "blank": int((~found.found).sum()),
                "references": found.perturbations(),
            }
        noisy = interp(model, x_noisy, pred)
        rows.append(
            {
                "interpreter": name,
                "seconds": round(seconds, 3),
                "stability_l1": round(float(l1_distance(maps[name], noisy).mean()), 4),
                "stability_iou": round(float(topk_iou(maps[name], noisy).mean()), 4),
                "stability_spearman": round(float(spearman(maps[name], noisy).mean()), 4),
            }
        )
    names = list(maps)
    agreement = {
        a: {b: round(float(spearman(maps[a], maps[b]).mean()), 3) for b in names} for a in names
    }
    if run.out is not None:
        save_grid(run.figure_path("interpreters.png"), x, y, pred, conf, maps, test.classes)
    return {
        "n_images": N_IMAGES,
        "per_interpreter": rows,
        "spearman_agreement": agreement,
        "mask": mask_record,
        "rts": {
            "train_seconds": round(rts.meta["seconds"], 2),
            "steps": history[-1]["step"] if history else 0,
            "test": rts_stats,
            "checkpoint": RTS_CHECKPOINT,
        },
        "notes": "CAM skipped: ross-cnn has no GAP→FC head (Grad-CAM used); MASK coarse mask 4×4 on 8×8 inputs",
    }


def interpreters(run: StudyRun) -> dict[str, Any]:
    run.log("section: interpreters")
    return cached_section(run, "interpreters", evaluation, uses=("model", "train", "test"))


def write(report: Report, run: StudyRun) -> None:
    """The "Interpreters" section of the report."""
    r = run.results["interpreters"]
    rts, stats = r["rts"], r["rts"]["test"]
    report.section("Interpreters")
    report.text(
        f"Maps of {len(r['per_interpreter'])} interpreters for the predicted class of {r['n_images']} test images "
        "(`underfire.interpreters`; each normalized to [0, 1]). The ross-cnn has no global-average-pooling "
        "head, so CAM does not apply; Grad-CAM explains its last conv block. "
        f"RTS was trained for {rts['train_seconds']:.1f} s: on {stats['n']} test images the region its mask preserves "
        f"keeps the class for **{stats['kept']:.1%}** of them (the fully blurred image: {stats['blurred_kept']:.1%}), "
        f"deleting it changes the class for {stats['destroyed']:.1%}, with a mean mask area of {stats['area']:.2f}. "
        f"Stability compares maps of x and x + δ (uniform noise, ‖δ‖∞ ≤ {NOISE}) with the measures of Zhang et al. "
        "(L1 distance, top-k IoU, Spearman rank correlation)."
    )
    report.table(r["per_interpreter"])
    mask = r.get("mask") or {}
    if mask:
        refs = mask["references"]
        used = ", ".join(f"{k} {refs.count(k)}" for k in dict.fromkeys(refs))
        report.text(
            f"MASK found a deletion for {len(refs) - mask['blank']} of {len(refs)} images "
            f"(blank maps: {mask['blank']}); the reference each deletion blends towards: {used} "
            "(blur unless the blurred image keeps the class)."
        )
    report.figure(
        run.figure_path("interpreters.png"),
        "Test images (predicted class, confidence) and the maps of each interpreter",
    )


PARTS = (section_part("interpreters", "interpreters", interpreters),)
