"""Demo section: input-gradient regularization against transferred FGSM (Ross & Doshi-Velez 2018).

Trains a gradient-regularized copy of the demo's classifier and an independent normally
trained *source* model (another seed, standing in for the attacker's own model), crafts FGSM
examples on the source and compares how the demo's normal model and the regularized one
classify them, ε by ε (the transfer setting of the paper's Fig. 1).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from underfire.attacks import FGSM, GradientMaskingWarning
from underfire.defenses import GradientRegularization
from underfire.models import model_for_dataset
from underfire.plotting import new_figure, save_figure
from underfire.train import TrainConfig, Trainer, evaluate

if TYPE_CHECKING:
    from underfire.experiments.demo_context import DemoContext

__all__ = ["section"]

EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
LAM = 1.0  # per-example convention (= paper λ 512 at batch 256), a digits-sized choice
EPOCHS = 8


def _train(ctx: DemoContext, objective, seed: int, name: str) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = model_for_dataset("ross-cnn", ctx.dataset)
    Trainer(
        model,
        objective,
        TrainConfig(epochs=EPOCHS, batch_size=64, lr=2e-3, seed=seed),
        device=ctx.device,
        checkpoint=ctx.out / "defenses" / f"{name}.pt",
        meta={"dataset": ctx.dataset, "demo": "defenses"},
    ).fit(ctx.train)
    return model.eval()


def section(ctx: DemoContext) -> None:
    """Normal vs gradient-regularized model on FGSM examples transferred from a third model."""
    gradreg = _train(ctx, GradientRegularization(LAM), ctx.seed, "gradreg")
    source = _train(ctx, None, ctx.seed + 1, "source")
    victims = {"normal": ctx.model, "gradient-regularized": gradreg}
    x, y = ctx.test.x.to(ctx.device), ctx.test.y.to(ctx.device)
    acc: dict[str, list[float]] = {name: [] for name in victims}
    white: dict[str, list[float]] = {name: [] for name in victims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientMaskingWarning)
        for x_adv in FGSM().sweep(source, x, y, list(EPS)):
            with torch.no_grad():
                for name, model in victims.items():
                    acc[name].append(float((model(x_adv).argmax(1) == y).float().mean()))
        for name, model in victims.items():
            for x_adv in FGSM().sweep(model, x, y, list(EPS)):
                with torch.no_grad():
                    white[name].append(float((model(x_adv).argmax(1) == y).float().mean()))
    clean = {
        name: evaluate(model, ctx.test, device=ctx.device)["accuracy"]
        for name, model in victims.items()
    }
    ctx.results["defenses"] = {
        "eps": list(EPS),
        "lam": LAM,
        "epochs": EPOCHS,
        "clean_accuracy": clean,
        "transferred_fgsm_accuracy": acc,
        "whitebox_fgsm_accuracy": white,
    }

    fig = new_figure(8, 3.2)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for name in victims:
        ax1.plot(EPS, acc[name], marker="o", label=name)
        ax2.plot(EPS, white[name], marker="o", label=name)
    ax1.set(
        title="FGSM transferred from another model",
        xlabel="ε",
        ylabel="accuracy",
        ylim=(-0.02, 1.02),
    )
    ax2.set(title="white-box FGSM", xlabel="ε")
    ax1.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    save_figure(fig, ctx.figure_path("defenses.png"))

    i = EPS.index(0.2)
    ctx.report.section("Defense: input-gradient regularization")
    ctx.report.text(
        f"A copy of the classifier trained with input-gradient regularization (double backpropagation, "
        f"Ross & Doshi-Velez 2018; λ = {LAM:g} per example) keeps {clean['gradient-regularized']:.1%} clean accuracy "
        f"(normal: {clean['normal']:.1%}). On FGSM examples at ε = {EPS[i]:g} crafted on an independently trained model "
        f"it classifies {acc['gradient-regularized'][i]:.1%} correctly, the normal model {acc['normal'][i]:.1%}."
    )
    ctx.report.table(
        [
            {
                "ε": e,
                "normal (transfer)": acc["normal"][k],
                "grad. reg. (transfer)": acc["gradient-regularized"][k],
                "normal (white-box)": white["normal"][k],
                "grad. reg. (white-box)": white["gradient-regularized"][k],
            }
            for k, e in enumerate(EPS)
        ]
    )
    ctx.report.figure(
        ctx.figure_path("defenses.png"),
        "Accuracy under FGSM: transferred (left) and white-box (right)",
    )
