"""The demo's first parts: its settings, the data and the audited classifier.

None is cached: loading the embedded data is quick, and training resumes from (or, once
finished, reloads) the Trainer's own checkpoint ``OUT/model.pt``. They put the data sets
(``train``, ``val``, ``test``) and the trained ``model`` into ``run.state``, where the sections'
cached parts name them in ``uses``.
"""

from __future__ import annotations

from typing import Any

from underfire._version import __version__
from underfire.data import ImageDataset, load_dataset
from underfire.models import model_for_dataset
from underfire.studies.base import Part, StudyRun
from underfire.train import TrainConfig, Trainer

__all__ = ["PARTS", "CHECKPOINT"]

#: The classifier's checkpoint in the output folder (README and docs audit it by this name).
CHECKPOINT = "model.pt"


def settings(run: StudyRun) -> dict[str, Any]:
    """The run's settings as the results file has always shown them."""
    cfg = run.config
    return {
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "device": str(run.device),
        "underfire_version": __version__,
    }


def load_data(run: StudyRun) -> None:
    """Train, validation and test splits (in memory) into ``run.state``."""
    cfg = run.config
    splits = {
        split: load_dataset(cfg.dataset, split, cfg.data_root, seed=cfg.seed)
        for split in ("train", "val", "test")
    }
    if not all(isinstance(d, ImageDataset) for d in splits.values()):
        raise TypeError(
            f"the demo needs an in-memory dataset; {cfg.dataset} is read from disk per image"
        )
    run.state.update(splits)


def train_model(run: StudyRun) -> None:
    """Train (or resume, or reload) the ross-cnn the demo audits: ``run.state["model"]``."""
    cfg = run.config
    model = model_for_dataset("ross-cnn", cfg.dataset)
    train = run.state["train"]
    run.log(f"training ross-cnn on {cfg.dataset} ({len(train)} images)")
    trainer = Trainer(
        model,
        config=TrainConfig(epochs=cfg.epochs, batch_size=64, lr=1e-3, seed=cfg.seed),
        device=run.device,
        checkpoint=run.out / CHECKPOINT if run.out is not None else None,
        progress=run.progress,
        meta={"dataset": cfg.dataset, "data_seed": cfg.seed},
    )
    run.state["training"] = trainer.fit(train, run.state["val"])
    run.state["model"] = model.eval()


PARTS = (
    Part("config", settings, cache=False),
    Part("data", load_data, cache=False),
    Part("model", train_model, cache=False),
)
