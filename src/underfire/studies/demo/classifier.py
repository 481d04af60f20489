"""`underfire demo` section "classifier": clean accuracy, confusion matrix, sample predictions."""

from __future__ import annotations

import torch

from underfire.experiments.demo_context import DemoContext
from underfire.plotting import new_figure, save_figure
from underfire.train import evaluate

__all__ = ["section"]


def section(ctx: DemoContext) -> None:
    """Clean accuracy, confusion matrix and sample predictions of the trained model."""
    metrics = evaluate(ctx.model, ctx.test, device=ctx.device)
    x, y = ctx.test.x.to(ctx.device), ctx.test.y.to(ctx.device)
    with torch.no_grad():
        pred = ctx.model(x).argmax(1)
    k = ctx.test.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((y.cpu(), pred.cpu()), torch.ones_like(y.cpu()), accumulate=True)
    per_class = (confusion.diag().float() / confusion.sum(1).clamp_min(1)).tolist()
    ctx.results["classifier"] |= {
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
    }

    fig = new_figure(9, 4)
    ax1, ax2 = fig.subplots(1, 2)
    im = ax1.imshow(confusion.numpy(), cmap="Blues")
    ax1.set(title="confusion matrix (test)", xlabel="predicted", ylabel="true")
    fig.colorbar(im, ax=ax1)
    history = ctx.results["classifier"]["history"]
    ax2.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label="train loss")
    if history and "val_accuracy" in history[0]:
        ax2.plot(
            [h["epoch"] for h in history],
            [1 - h["val_accuracy"] for h in history],
            label="val error",
        )
    ax2.set(xlabel="epoch", yscale="log", title="training")
    ax2.legend()
    save_figure(fig, ctx.figure_path("classifier.png"))

    fig = new_figure(8, 2.2)
    axes = fig.subplots(1, 8)
    for i, ax in enumerate(axes):
        ax.imshow(x[i].permute(1, 2, 0).squeeze(-1).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"{ctx.test.classes[int(pred[i])]} ({ctx.test.classes[int(y[i])]})", fontsize=8
        )
        ax.axis("off")
    save_figure(fig, ctx.figure_path("predictions.png"))

    c = ctx.results["classifier"]
    ctx.report.section("Classifier")
    ctx.report.text(
        f"A `{c['model']}` trained on `{ctx.dataset}` ({len(ctx.train)} training images, "
        f"{c['epochs']} epochs, {c['train_seconds']:.1f} s) reaches **{metrics['accuracy']:.2%}** "
        f"test accuracy on {metrics['n']} held-out images."
    )
    ctx.report.figure(ctx.figure_path("classifier.png"), "Confusion matrix and training curve")
    ctx.report.figure(ctx.figure_path("predictions.png"), "Test images: predicted (true) class")
