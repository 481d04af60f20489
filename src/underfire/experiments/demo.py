"""`underfire demo`: a security audit of an interpretable model on the embedded default data.

Trains a classifier on scikit-learn's digits, then runs every section in :data:`SECTIONS`
(each capability of the library adds one), and writes ``results.json``, PNG figures and a
report (``report.md``, self-contained ``report.html``) to the output folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from underfire import _io
from underfire._version import __version__
from underfire.data import ImageDataset, load_dataset
from underfire.models import ImageClassifier, model_for_dataset
from underfire.plotting import new_figure, save_figure
from underfire.report import Report
from underfire.train import TrainConfig, Trainer, evaluate, seed_everything


@dataclass
class DemoContext:
    """What every demo section can use and add to."""

    out: Path
    device: torch.device
    seed: int
    dataset: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    model: ImageClassifier
    report: Report
    results: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda _msg: None

    def figure_path(self, name: str) -> Path:
        return self.out / "figures" / name


def classifier_section(ctx: DemoContext) -> None:
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


# Each capability adds one (name, section) here; they run in order after training.
SECTIONS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("classifier", classifier_section),
    ("defenses", __import__("underfire.experiments.demo_defenses", fromlist=["section"]).section),
    ("attacks", __import__("underfire.experiments.demo_attacks", fromlist=["section"]).section),
    (
        "interpreters",
        __import__("underfire.experiments.demo_interpreters", fromlist=["section"]).section,
    ),
]


def run_demo(
    out: str | Path = "underfire-demo",
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    dataset: str = "digits",
    data_root: str | Path | None = None,
    epochs: int = 15,
    sections: list[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run the demo audit and write its outputs to ``out``; returns the results dict."""
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    known = [name for name, _ in SECTIONS]
    for name in sections or []:
        if name not in known:
            raise ValueError(f"unknown demo section {name!r}; choose from: {', '.join(known)}")
    seed_everything(seed)
    train = load_dataset(dataset, "train", data_root, seed=seed)
    val = load_dataset(dataset, "val", data_root, seed=seed)
    test = load_dataset(dataset, "test", data_root, seed=seed)
    if not isinstance(train, ImageDataset):
        raise TypeError(
            f"the demo needs an in-memory dataset; {dataset} is read from disk per image"
        )

    model = model_for_dataset("ross-cnn", dataset)
    log(f"training ross-cnn on {dataset} ({len(train)} images)")
    trainer = Trainer(
        model,
        config=TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=seed),
        device=device,
        checkpoint=out / "model.pt",
        progress=progress,
        meta={"dataset": dataset, "data_seed": seed},
    )
    result = trainer.fit(train, val)
    model.eval()
    report = Report("underfire demo: security audit of an interpretable classifier")
    report.text(
        f"underfire {__version__}. Dataset `{dataset}`, seed {seed}, device `{device}`. "
        "Every number below was computed by this run; `results.json` holds them all."
    )
    ctx = DemoContext(out, device, seed, dataset, train, val, test, model, report, log=log)
    ctx.results["config"] = {
        "dataset": dataset,
        "seed": seed,
        "epochs": epochs,
        "device": str(device),
        "underfire_version": __version__,
    }
    ctx.results["classifier"] = {
        "model": "ross-cnn",
        "epochs": epochs,
        "train_seconds": result.seconds,
        "history": result.history,
        "checkpoint": "model.pt",
    }
    timings: dict[str, float] = {}
    for name, section in SECTIONS:
        if sections and name not in sections:
            continue
        log(f"section: {name}")
        t0 = time.perf_counter()
        section(ctx)
        timings[name] = round(time.perf_counter() - t0, 3)
    ctx.results["timings"] = timings | {"total": round(time.perf_counter() - t_start, 3)}
    _io.write_json(out / "results.json", ctx.results)
    report.write(out)
    return ctx.results
