"""`underfire demo`: a security audit of an interpretable model on the embedded default data.

Trains a classifier on scikit-learn's digits, then runs every section in :data:`SECTIONS`
(each capability of the library adds one), and writes ``results.json``, PNG figures and a
report (``report.md``, self-contained ``report.html``) to the output folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from underfire._version import __version__
from underfire.core import io as _io
from underfire.data import ImageDataset, load_dataset
from underfire.experiments import (
    demo_adv2,
    demo_attacks,
    demo_classifier,
    demo_defenses,
    demo_diagnosis,
    demo_interpreters,
)
from underfire.experiments.demo_context import DemoContext
from underfire.models import model_for_dataset
from underfire.report import Report
from underfire.train import TrainConfig, Trainer, evaluate, seed_everything

# Each capability adds one (name, section) here; they run in order after training.
SECTIONS: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("classifier", demo_classifier.section),
    ("defenses", demo_defenses.section),
    ("attacks", demo_attacks.section),
    ("interpreters", demo_interpreters.section),
    ("adv2", demo_adv2.section),
    ("diagnosis", demo_diagnosis.section),
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
    if not (
        isinstance(train, ImageDataset)
        and isinstance(val, ImageDataset)
        and isinstance(test, ImageDataset)
    ):
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
        # every section and the CLI may quote it, also when the classifier section is skipped
        "test_accuracy": evaluate(model, test, device=device)["accuracy"],
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
