"""Demo section: layer-by-layer diagnosis of adversarial vulnerability (Zheng, Zhang, Lee &
Prakash 2020).

Attacks the demo's classifier (max pooling) and an average-pooling twin trained the same way
with PGD, measures per layer the perturbation's amplification, top-k activation patching and
information loss (linear probe), and trains a brief InterpretGAN on two layers of the demo's
classifier to show what those layers "see" in clean and adversarial digits.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from underfire.attacks import PGD
from underfire.diagnosis import (
    InterpretGANConfig,
    layer_vulnerability,
    readable_rows,
    train_interpretgan,
)
from underfire.diagnosis.plots import plot_interpretgan, plot_layer_vulnerability
from underfire.models import model_for_dataset
from underfire.train import TrainConfig, Trainer, evaluate

if TYPE_CHECKING:
    from underfire.experiments.demo_context import DemoContext

__all__ = ["section"]

EPS = 0.1
N = 200
GAN_LAYERS = ["net.features.pool1", "net.features.pool2"]
GAN_STEPS = 150


def section(ctx: DemoContext) -> None:
    """Per-layer diagnosis of max vs average pooling, and InterpretGAN images."""
    t0 = time.perf_counter()
    torch.manual_seed(ctx.seed)
    avg = model_for_dataset("ross-cnn", ctx.dataset, pooling="avg")
    Trainer(
        avg,
        config=TrainConfig(epochs=15, batch_size=64, lr=1e-3, seed=ctx.seed),
        device=ctx.device,
        checkpoint=ctx.out / "diagnosis" / "avg_pool.pt",
        meta={"dataset": ctx.dataset, "demo": "diagnosis"},
    ).fit(ctx.train)
    avg.eval()
    x, y = ctx.test.x[:N].to(ctx.device), ctx.test.y[:N].to(ctx.device)
    results = {}
    for name, model in (("max pooling", ctx.model), ("average pooling", avg)):
        x_adv = PGD(eps=EPS, steps=10, seed=ctx.seed)(model, x, y)
        results[name] = layer_vulnerability(model, x, x_adv, y=y)
    plot_layer_vulnerability(
        results, ctx.figure_path("diagnosis_layers.png"), title=f"PGD ε={EPS:g}"
    )

    gan, history = train_interpretgan(
        ctx.model,
        ctx.train,
        GAN_LAYERS,
        InterpretGANConfig(steps=GAN_STEPS, batch_size=32, width=32, seed=ctx.seed),
        device=ctx.device,
        checkpoint=ctx.out / "diagnosis" / "interpretgan.pt",
    )
    x_adv = PGD(eps=EPS, steps=10, seed=ctx.seed)(ctx.model, x, y)
    with torch.no_grad():
        fooled = ((ctx.model(x).argmax(1) == y) & (ctx.model(x_adv).argmax(1) != y)).nonzero()
    pick = fooled.flatten()[:6].tolist() or list(range(6))
    plot_interpretgan(
        gan,
        ctx.model,
        x[pick],
        x_adv[pick],
        ctx.figure_path("diagnosis_interpretgan.png"),
        classes=ctx.test.info.classes,
    )
    clean_acc = {
        "max pooling": evaluate(ctx.model, ctx.test, device=ctx.device)["accuracy"],
        "average pooling": evaluate(avg, ctx.test, device=ctx.device)["accuracy"],
    }
    ctx.results["diagnosis"] = {
        "eps": EPS,
        "n": N,
        "clean_accuracy": clean_acc,
        "layers": {name: r.to_dict() for name, r in results.items()},
        "interpretgan": {"layers": GAN_LAYERS, "steps": GAN_STEPS, "history": history[-1:]},
        "seconds": round(time.perf_counter() - t0, 2),
    }

    mx, av = results["max pooling"], results["average pooling"]
    ctx.report.section("Diagnosis: which layers carry the attack (Zheng et al. 2020)")
    ctx.report.text(
        f"PGD (L∞, ε = {EPS:g}, 10 steps) on {N} test digits lowers the accuracy of the max-pooling "
        f"classifier from {mx.clean_accuracy:.1%} to {mx.adversarial_accuracy:.1%} and of an "
        f"average-pooling twin (same training) from {av.clean_accuracy:.1%} to {av.adversarial_accuracy:.1%}. "
        "Per layer: *amplification* is the relative feature change ‖h(x′)−h(x)‖/‖h(x)‖, *growth* its "
        "ratio to the previous layer's; *restored (top k units)* is the share of the correct-class probability "
        f"that comes back when the {mx.topk:.0%} most perturbed units of the layer get their clean "
        "values; *information loss* is the fraction of the images' variance a cross-validated linear "
        "probe cannot recover from the layer (docs/diagnosis.md). One seed, one small data set: "
        "an illustration, not a finding."
    )
    ctx.report.table(
        [
            {"model": name} | {k: v for k, v in row.items() if not k.endswith("(whole layer)")}
            for name, r in results.items()
            for row in readable_rows(r.rows())[0]
        ]
    )
    ctx.report.text(
        f"Spearman correlation across layers between information loss and amplification: "
        f"{mx.correlation:.2f} (max pooling), {av.correlation:.2f} (average pooling)."
    )
    ctx.report.figure(
        ctx.figure_path("diagnosis_layers.png"), "Per-layer diagnosis, max vs average pooling"
    )
    ctx.report.text(
        f"An InterpretGAN trained for {GAN_STEPS} steps on two layers of the max-pooling classifier "
        "turns each layer's features back into an image. Rows: adversarial examples that fool the "
        "classifier; columns: clean and adversarial input, then per layer the image generated from "
        "the clean and from the adversarial features, titled with the classifier's label (red where "
        "it differs from the clean image's)."
    )
    ctx.report.figure(
        ctx.figure_path("diagnosis_interpretgan.png"), "InterpretGAN: what each layer encodes"
    )
