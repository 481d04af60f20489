"""Demo section: input-gradient regularization against transferred FGSM (Ross & Doshi-Velez 2018).

Trains a gradient-regularized copy of the demo's classifier and an independent normally
trained *source* model (another seed, standing in for the attacker's own model), crafts FGSM
examples on the source and compares how the demo's normal model and the regularized one
classify them, ε by ε (the transfer setting of the paper's Fig. 1).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from underfire.attacks import FGSM, GradientMaskingWarning
from underfire.defenses import GradientRegularization
from underfire.models import model_for_dataset
from underfire.plotting import new_figure, save_figure
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.demo.sections import cached_section, section_part
from underfire.train import TrainConfig, Trainer, evaluate

__all__ = ["PARTS", "evaluation", "write"]

EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
LAM = 1.0  # per-example convention (= paper λ 512 at batch 256), a digits-sized choice
EPOCHS = 8


def _train(run: StudyRun, objective: Any, seed: int, name: str) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = model_for_dataset("ross-cnn", run.config.dataset)
    Trainer(
        model,
        objective,
        TrainConfig(epochs=EPOCHS, batch_size=64, lr=2e-3, seed=seed),
        device=run.device,
        checkpoint=run.out / "defenses" / f"{name}.pt" if run.out is not None else None,
        meta={"dataset": run.config.dataset, "demo": "defenses"},
    ).fit(run.state["train"])
    return model.eval()


def train_models(run: StudyRun) -> None:
    """The gradient-regularized copy and the attacker's source model (each resumes from its
    checkpoint in ``OUT/defenses``): ``run.state["gradreg"]``, ``run.state["source"]``."""
    run.log("section: defenses")
    run.state["gradreg"] = _train(run, GradientRegularization(LAM), run.config.seed, "gradreg")
    run.state["source"] = _train(run, None, run.config.seed + 1, "source")


def evaluation(run: StudyRun) -> dict[str, Any]:
    """Normal vs gradient-regularized model on FGSM examples transferred from a third model."""
    test, source = run.state["test"], run.state["source"]
    victims = {"normal": run.state["model"], "gradient-regularized": run.state["gradreg"]}
    x, y = test.x.to(run.device), test.y.to(run.device)
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
        name: evaluate(model, test, device=run.device)["accuracy"]
        for name, model in victims.items()
    }
    if run.out is not None:
        _figure(run, acc, white)
    return {
        "eps": list(EPS),
        "lam": LAM,
        "epochs": EPOCHS,
        "clean_accuracy": clean,
        "transferred_fgsm_accuracy": acc,
        "whitebox_fgsm_accuracy": white,
    }


def _figure(run: StudyRun, acc: dict[str, list[float]], white: dict[str, list[float]]) -> None:
    fig = new_figure(8, 3.2)
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for name in acc:
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
    save_figure(fig, run.figure_path("defenses.png"))


def defenses(run: StudyRun) -> dict[str, Any]:
    return cached_section(run, "defenses", evaluation, uses=("model", "gradreg", "source", "test"))


def write(report: Report, run: StudyRun) -> None:
    """The "Defense" section of the report."""
    r = run.results["defenses"]
    clean, acc, white = (
        r["clean_accuracy"],
        r["transferred_fgsm_accuracy"],
        r["whitebox_fgsm_accuracy"],
    )
    eps = r["eps"]
    i = eps.index(0.2)
    report.section("Defense: input-gradient regularization")
    report.text(
        f"A copy of the classifier trained with input-gradient regularization (double backpropagation, "
        f"Ross & Doshi-Velez 2018; λ = {r['lam']:g} per example) keeps {clean['gradient-regularized']:.1%} clean accuracy "
        f"(normal: {clean['normal']:.1%}). On FGSM examples at ε = {eps[i]:g} crafted on an independently trained model "
        f"it classifies {acc['gradient-regularized'][i]:.1%} correctly, the normal model {acc['normal'][i]:.1%}."
    )
    report.table(
        [
            {
                "ε": e,
                "normal (transfer)": acc["normal"][k],
                "grad. reg. (transfer)": acc["gradient-regularized"][k],
                "normal (white-box)": white["normal"][k],
                "grad. reg. (white-box)": white["gradient-regularized"][k],
            }
            for k, e in enumerate(eps)
        ]
    )
    report.figure(
        run.figure_path("defenses.png"),
        "Accuracy under FGSM: transferred (left) and white-box (right)",
    )


PARTS = (
    section_part("defenses", "defense-models", train_models),
    section_part("defenses", "defenses", defenses),
)
