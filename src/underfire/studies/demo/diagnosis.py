"""Demo section: layer-by-layer diagnosis of adversarial vulnerability (Zheng, Zhang, Lee &
Prakash 2020).

Attacks the demo's classifier (max pooling) and an average-pooling twin trained the same way
with PGD, measures per layer the perturbation's amplification, top-k activation patching and
information loss (linear probe), and trains a brief InterpretGAN on two layers of the demo's
classifier to show what those layers "see" in clean and adversarial digits.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from underfire.attacks import PGD
from underfire.diagnosis import (
    InterpretGANConfig,
    LayerVulnerability,
    layer_vulnerability,
    readable_rows,
    train_interpretgan,
)
from underfire.diagnosis.plots import plot_interpretgan, plot_layer_vulnerability
from underfire.models import model_for_dataset
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.demo.sections import cached_section, section_part
from underfire.train import TrainConfig, Trainer, evaluate

__all__ = ["PARTS", "evaluation", "write"]

EPS = 0.1
N = 200
GAN_LAYERS = ["net.features.pool1", "net.features.pool2"]
GAN_STEPS = 150


def train_models(run: StudyRun) -> None:
    """The average-pooling twin and the InterpretGAN of the demo model (each resumes from its
    checkpoint in ``OUT/diagnosis``): ``run.state["avg_pool"]``, ``run.state["interpretgan"]``
    and its generators as one module (``"interpretgan_weights"``, their identity)."""
    run.log("section: diagnosis")
    cfg, folder = run.config, run.out / "diagnosis" if run.out is not None else None
    torch.manual_seed(cfg.seed)
    avg = model_for_dataset("ross-cnn", cfg.dataset, pooling="avg")
    Trainer(
        avg,
        config=TrainConfig(epochs=15, batch_size=64, lr=1e-3, seed=cfg.seed),
        device=run.device,
        checkpoint=folder / "avg_pool.pt" if folder is not None else None,
        meta={"dataset": cfg.dataset, "demo": "diagnosis"},
    ).fit(run.state["train"])
    run.state["avg_pool"] = avg.eval()
    gan, history = train_interpretgan(
        run.state["model"],
        run.state["train"],
        GAN_LAYERS,
        InterpretGANConfig(steps=GAN_STEPS, batch_size=32, width=32, seed=cfg.seed),
        device=run.device,
        checkpoint=folder / "interpretgan.pt" if folder is not None else None,
    )
    run.state["interpretgan"] = gan
    run.state["interpretgan_history"] = history
    run.state["interpretgan_weights"] = nn.ModuleList(gan.generators.values())


def evaluation(run: StudyRun) -> dict[str, Any]:
    """Per-layer diagnosis of max vs average pooling under PGD, and the InterpretGAN figure."""
    t0 = time.perf_counter()
    model, avg, test, device = (
        run.state["model"],
        run.state["avg_pool"],
        run.state["test"],
        run.device,
    )
    seed = run.config.seed
    x, y = test.x[:N].to(device), test.y[:N].to(device)
    results = {}
    for name, m in (("max pooling", model), ("average pooling", avg)):
        x_adv = PGD(eps=EPS, steps=10, seed=seed)(m, x, y)
        results[name] = layer_vulnerability(m, x, x_adv, y=y)
    x_adv = PGD(eps=EPS, steps=10, seed=seed)(model, x, y)
    if run.out is not None:
        plot_layer_vulnerability(
            results, run.figure_path("diagnosis_layers.png"), title=f"PGD ε={EPS:g}"
        )
        with torch.no_grad():
            fooled = ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)).nonzero()
        pick = fooled.flatten()[:6].tolist() or list(range(6))
        plot_interpretgan(
            run.state["interpretgan"],
            model,
            x[pick],
            x_adv[pick],
            run.figure_path("diagnosis_interpretgan.png"),
            classes=test.info.classes,
        )
    clean_acc = {
        "max pooling": evaluate(model, test, device=device)["accuracy"],
        "average pooling": evaluate(avg, test, device=device)["accuracy"],
    }
    history = run.state["interpretgan_history"]
    return {
        "eps": EPS,
        "n": N,
        "clean_accuracy": clean_acc,
        "layers": {name: r.to_dict() for name, r in results.items()},
        "interpretgan": {"layers": GAN_LAYERS, "steps": GAN_STEPS, "history": history[-1:]},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def diagnosis(run: StudyRun) -> dict[str, Any]:
    return cached_section(
        run,
        "diagnosis",
        evaluation,
        uses=("model", "avg_pool", "interpretgan_weights", "test"),
    )


def _layers(stored: dict[str, Any]) -> LayerVulnerability:
    """A stored result back as the dataclass (its JSON form holds None for NaN)."""

    def nan(value: Any) -> Any:
        if value is None:
            return math.nan
        if isinstance(value, list):
            return [nan(v) for v in value]
        return value

    return LayerVulnerability(
        **{k: nan(v) if k != "feature_shapes" else v for k, v in stored.items()}
    )


def write(report: Report, run: StudyRun) -> None:
    """The "Diagnosis" section of the report."""
    r = run.results["diagnosis"]
    results = {name: _layers(d) for name, d in r["layers"].items()}
    mx, av = results["max pooling"], results["average pooling"]
    gan_steps = r["interpretgan"]["steps"]
    report.section("Diagnosis: which layers carry the attack (Zheng et al. 2020)")
    report.text(
        f"PGD (L∞, ε = {r['eps']:g}, 10 steps) on {r['n']} test digits lowers the accuracy of the max-pooling "
        f"classifier from {mx.clean_accuracy:.1%} to {mx.adversarial_accuracy:.1%} and of an "
        f"average-pooling twin (same training) from {av.clean_accuracy:.1%} to {av.adversarial_accuracy:.1%}. "
        "Per layer: *amplification* is the relative feature change ‖h(x′)−h(x)‖/‖h(x)‖, *growth* its "
        "ratio to the previous layer's; *restored (top k units)* is the share of the correct-class probability "
        f"that comes back when the {mx.topk:.0%} most perturbed units of the layer get their clean "
        "values; *information loss* is the fraction of the images' variance a cross-validated linear "
        "probe cannot recover from the layer (docs/diagnosis.md). One seed, one small data set: "
        "an illustration, not a finding."
    )
    report.table(
        [
            {"model": name} | {k: v for k, v in row.items() if not k.endswith("(whole layer)")}
            for name, lv in results.items()
            for row in readable_rows(lv.rows())[0]
        ]
    )
    report.text(
        f"Spearman correlation across layers between information loss and amplification: "
        f"{mx.correlation:.2f} (max pooling), {av.correlation:.2f} (average pooling)."
    )
    report.figure(
        run.figure_path("diagnosis_layers.png"), "Per-layer diagnosis, max vs average pooling"
    )
    report.text(
        f"An InterpretGAN trained for {gan_steps} steps on two layers of the max-pooling classifier "
        "turns each layer's features back into an image. Rows: adversarial examples that fool the "
        "classifier; columns: clean and adversarial input, then per layer the image generated from "
        "the clean and from the adversarial features, titled with the classifier's label (red where "
        "it differs from the clean image's)."
    )
    report.figure(
        run.figure_path("diagnosis_interpretgan.png"), "InterpretGAN: what each layer encodes"
    )


PARTS = (
    section_part("diagnosis", "diagnosis-models", train_models),
    section_part("diagnosis", "diagnosis", diagnosis),
)
