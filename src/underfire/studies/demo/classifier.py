"""Demo section "classifier": clean accuracy, confusion matrix, sample predictions.

The ``classifier`` result is always present (the command line and every section quote its
test accuracy); the section adds the loss, per-class accuracy, confusion matrix and figures.
"""

from __future__ import annotations

from typing import Any

import torch

from underfire.plotting import new_figure, save_figure
from underfire.report import Report
from underfire.studies.base import Part, StudyRun
from underfire.studies.demo.sections import cached_section
from underfire.studies.demo.training import CHECKPOINT
from underfire.train import evaluate

__all__ = ["PARTS", "evaluation", "write"]


def accuracy(run: StudyRun) -> dict[str, Any]:
    """Test accuracy alone (the section is not selected)."""
    return {
        "test_accuracy": evaluate(run.state["model"], run.state["test"], device=run.device)[
            "accuracy"
        ]
    }


def evaluation(run: StudyRun) -> dict[str, Any]:
    """Clean accuracy, loss, per-class accuracy and confusion matrix; the section's figures."""
    model, test = run.state["model"], run.state["test"]
    metrics = evaluate(model, test, device=run.device)
    x, y = test.x.to(run.device), test.y.to(run.device)
    with torch.no_grad():
        pred = model(x).argmax(1)
    k = test.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((y.cpu(), pred.cpu()), torch.ones_like(y.cpu()), accumulate=True)
    per_class = (confusion.diag().float() / confusion.sum(1).clamp_min(1)).tolist()
    if run.out is not None:
        _figures(run, confusion, x, y, pred)
    return {
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }


def _figures(
    run: StudyRun, confusion: torch.Tensor, x: torch.Tensor, y: torch.Tensor, pred: torch.Tensor
) -> None:
    fig = new_figure(9, 4)
    ax1, ax2 = fig.subplots(1, 2)
    im = ax1.imshow(confusion.numpy(), cmap="Blues")
    ax1.set(title="confusion matrix (test)", xlabel="predicted", ylabel="true")
    fig.colorbar(im, ax=ax1)
    history = run.state["training"].history
    ax2.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label="train loss")
    if history and "val_accuracy" in history[0]:
        ax2.plot(
            [h["epoch"] for h in history],
            [1 - h["val_accuracy"] for h in history],
            label="val error",
        )
    ax2.set(xlabel="epoch", yscale="log", title="training")
    ax2.legend()
    save_figure(fig, run.figure_path("classifier.png"))

    classes = run.state["test"].classes
    fig = new_figure(8, 2.2)
    axes = fig.subplots(1, 8)
    for i, ax in enumerate(axes):
        ax.imshow(x[i].permute(1, 2, 0).squeeze(-1).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{classes[int(pred[i])]} ({classes[int(y[i])]})", fontsize=8)
        ax.axis("off")
    save_figure(fig, run.figure_path("predictions.png"))


def classifier(run: StudyRun) -> dict[str, Any]:
    """How the classifier was trained and how accurate it is (the section's numbers when
    the section is selected, else the test accuracy alone)."""
    cfg, training = run.config, run.state["training"]
    base = {
        "model": "ross-cnn",
        "epochs": cfg.epochs,
        "train_seconds": training.seconds,
        "history": training.history,
        "checkpoint": CHECKPOINT,
    }
    if cfg.runs("classifier"):
        run.log("section: classifier")
        return base | cached_section(run, "classifier", evaluation, uses=("model", "test"))
    return base | cached_section(run, "accuracy", accuracy, uses=("model", "test"))


def write(report: Report, run: StudyRun) -> None:
    """The "Classifier" section of the report."""
    c = run.results["classifier"]
    report.section("Classifier")
    report.text(
        f"A `{c['model']}` trained on `{run.config.dataset}` ({len(run.state['train'])} training "
        f"images, {c['epochs']} epochs, {c['train_seconds']:.1f} s) reaches "
        f"**{c['test_accuracy']:.2%}** test accuracy on {len(run.state['test'])} held-out images."
    )
    report.figure(run.figure_path("classifier.png"), "Confusion matrix and training curve")
    report.figure(run.figure_path("predictions.png"), "Test images: predicted (true) class")


PARTS = (Part("classifier", classifier, cache=False),)
