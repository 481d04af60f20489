"""Demo section: interpretation maps of the demo classifier, a trained RTS and map metrics.

The demo model is a ross-cnn on 8×8 digits: it has no global-average-pooling head, so CAM
does not apply and Grad-CAM (on its last conv block, 4×4) stands in; MASK uses a 4×4 coarse
mask on these inputs. RTS is trained on the demo data within a time budget.
"""

from __future__ import annotations

import time

import torch

from underfire.experiments.demo_context import DemoContext
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

N_IMAGES = 8
NOISE = 0.03  # uniform input noise for the stability measure (maps of x vs x + δ, ‖δ‖∞ ≤ 0.03)


def section(ctx: DemoContext) -> None:
    """Add the "Interpreters" section: figure, RTS statistics, agreement and stability numbers."""
    # Many tiny ops (8×8 inputs): a second intra-op thread only adds synchronization, and on a
    # busy 2-core machine each op then waits for a core; one thread is several times faster.
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        _section(ctx)
    finally:
        torch.set_num_threads(threads)


def _section(ctx: DemoContext) -> None:

    model, device = ctx.model.eval(), ctx.device
    x = ctx.test.x[:N_IMAGES].to(device)
    y = ctx.test.y[:N_IMAGES].to(device)
    with torch.no_grad():
        probs = model(x).softmax(1)
    conf, pred = probs.max(1)

    ctx.log("interpreters: training RTS")
    rts_cfg = RTSConfig(
        steps=250, batch_size=32, width=32, area=2.0, lr=2e-3, seed=ctx.seed, max_seconds=15.0
    )
    rts, history = train_rts(model, ctx.train, rts_cfg, device=device)
    rts.save(ctx.out / "rts.pt")
    rts_stats = evaluate_rts(rts, model, ctx.test.x.to(device), ctx.test.y.to(device))

    interpreters: dict[str, Interpreter] = {
        "grad": Saliency(),
        "smoothgrad": SmoothGrad(samples=16, seed=ctx.seed),
        "ig": IntegratedGradients(steps=16),
        "gradcam": GradCAM(),
        "mask": Mask(steps=100, seed=ctx.seed),
        "rts": rts,
        "ensemble": Ensemble([Saliency(), GradCAM(), Mask(steps=100, seed=ctx.seed)]),
    }
    gen = torch.Generator().manual_seed(ctx.seed)
    noise = ((torch.rand(x.shape, generator=gen) * 2 - 1) * NOISE).to(device)
    x_noisy = (x + noise).clamp(0, 1)
    maps: dict[str, torch.Tensor] = {}
    rows = []
    for name, interp in interpreters.items():
        t0 = time.perf_counter()
        maps[name] = interp(model, x, pred)
        seconds = time.perf_counter() - t0
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

    figure = save_grid(
        ctx.figure_path("interpreters.png"), x, y, pred, conf, maps, ctx.test.classes
    )
    ctx.results["interpreters"] = {
        "n_images": N_IMAGES,
        "per_interpreter": rows,
        "spearman_agreement": agreement,
        "rts": {
            "train_seconds": round(rts.meta["seconds"], 2),
            "steps": history[-1]["step"] if history else 0,
            "test": rts_stats,
            "checkpoint": "rts.pt",
        },
        "notes": "CAM skipped: ross-cnn has no GAP→FC head (Grad-CAM used); MASK coarse mask 4×4 on 8×8 inputs",
    }

    ctx.report.section("Interpreters")
    ctx.report.text(
        f"Maps of {len(names)} interpreters for the predicted class of {N_IMAGES} test images "
        "(`underfire.interpreters`; each normalized to [0, 1]). The ross-cnn has no global-average-pooling "
        "head, so CAM does not apply; Grad-CAM explains its last conv block. "
        f"RTS was trained for {rts.meta['seconds']:.1f} s: on {rts_stats['n']} test images the region its mask preserves "
        f"keeps the class for **{rts_stats['kept']:.1%}** of them (the fully blurred image: {rts_stats['blurred_kept']:.1%}), "
        f"deleting it changes the class for {rts_stats['destroyed']:.1%}, with a mean mask area of {rts_stats['area']:.2f}. "
        f"Stability compares maps of x and x + δ (uniform noise, ‖δ‖∞ ≤ {NOISE}) with the measures of Zhang et al. "
        "(L1 distance, top-k IoU, Spearman rank correlation)."
    )
    ctx.report.table(rows)
    ctx.report.figure(
        figure, "Test images (predicted class, confidence) and the maps of each interpreter"
    )
