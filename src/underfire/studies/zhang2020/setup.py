"""The parts of the ADV² reproduction that build live objects: the data and the classifiers.

Neither is cached in ``parts/``: the data are loaded again (cheaply), and each classifier is
trained by the :class:`~underfire.train.Trainer`, which resumes from its own checkpoint in
``OUT/models`` (ImageNet classifiers load the user's weights). Later parts key their results
on these objects' identities, so a retrained or replaced classifier is never reported with
another one's results.
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from underfire._version import __version__
from underfire.data import ImageDataset, ImageFolderDataset, load_dataset
from underfire.models import create_model, model_for_dataset
from underfire.studies.base import StudyRun
from underfire.studies.zhang2020.config import Zhang2020Config
from underfire.train import CrossEntropy, TrainConfig, Trainer, seed_everything

__all__ = ["load_data", "setup_part", "train_classifier", "train_part"]


def load_data(
    cfg: Zhang2020Config,
) -> tuple[ImageDataset | None, ImageDataset | None, ImageDataset]:
    """(train, val, test). ImageNet: no training here; the sample's images are the test set,
    and the images after the attacked ones train RTS (train = those, val = None)."""
    root = cfg.data_root
    if cfg.dataset == "imagenet":
        ds = load_dataset("imagenet", "test", root, seed=cfg.seed)
        n_needed = cfg.n_eval + max(cfg.rts_batch, 16)
        if not isinstance(ds, ImageFolderDataset):
            raise TypeError(f"expected the ImageNet sample as image files, got {type(ds).__name__}")
        x, y = ds.tensors(min(len(ds), n_needed))
        info = ds.info
        test = ImageDataset(x[: cfg.n_eval].contiguous(), y[: cfg.n_eval], info, "test")
        rest = x[cfg.n_eval :]
        train = (
            ImageDataset(rest.contiguous(), y[cfg.n_eval :], info, "train") if len(rest) else None
        )
        return train, None, test
    splits = []
    for split in ("train", "val", "test"):
        ds = load_dataset(cfg.dataset, split, root, seed=cfg.seed)
        if not isinstance(ds, ImageDataset):
            raise TypeError(f"{cfg.dataset} is not an in-memory dataset")
        splits.append(ds)
    train, val, test = splits
    if cfg.n_train is not None and cfg.n_train < len(train):
        train = train.subset(cfg.n_train)
    return train, val, test


def setup_part(run: StudyRun) -> None:
    """Load the data into ``run.state`` (train, val, test) and record the run's settings."""
    cfg: Zhang2020Config = run.config
    train, val, test = load_data(cfg)
    run.state.update(train=train, val=val, test=test)
    run.results.update(config=cfg.to_dict(), underfire_version=__version__, device=str(run.device))
    n_train = len(train) if train is not None else 0
    run.log(f"{cfg.dataset}: {n_train} train / {len(test)} test images, profile {cfg.profile}")


def train_classifier(run: StudyRun, name: str) -> tuple[nn.Module, dict[str, Any]]:
    """Train (or resume from ``OUT/models/NAME.pt``) one classifier; ImageNet loads weights."""
    cfg: Zhang2020Config = run.config
    t0 = time.perf_counter()
    if cfg.dataset == "imagenet":
        w = cfg.weights[name]
        model = create_model(name, weights=None if w == "random" else w)
        info: dict[str, Any] = {"weights": w}
    else:
        train, val = run.state["train"], run.state["val"]
        seed_everything(cfg.seed)
        model = model_for_dataset(name, cfg.dataset, **cfg.model_kwargs.get(name, {}))
        cifar = name != "ross-cnn"
        steps = cfg.steps_for(name)
        tcfg = TrainConfig(
            steps=steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            optimizer="sgd" if cifar else "adam",
            weight_decay=5e-4 if cifar else 0.0,
            lr_schedule="cosine" if cifar else "constant",
            augment=cfg.augment,
            seed=cfg.seed,
            checkpoint_every=max(50, steps // 20),
        )
        ckpt = run.out / "models" / f"{name}.pt" if run.out is not None else None
        fit = Trainer(
            model,
            CrossEntropy(),
            tcfg,
            device=run.device,
            checkpoint=ckpt,
            progress=run.progress,
            meta={"dataset": cfg.dataset, "experiment": "zhang2020", "model": name},
        ).fit(train, val.subset(1000) if val is not None and len(val) > 1000 else val)
        info = {
            "checkpoint": str(ckpt.relative_to(run.out)) if ckpt and run.out else None,
            "steps": steps,
            # over every session that trained it (a reused classifier took ~0 s in this one)
            "training_seconds": round(fit.total_seconds, 1),
            "reused": fit.reused,
        }
    model.to(run.device).eval()
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return model, info


def train_part(run: StudyRun) -> None:
    """Every classifier of the config, into ``run.state["classifiers"]`` (and its training
    record into ``run.state["training"]``)."""
    cfg: Zhang2020Config = run.config
    models, training = {}, {}
    for name in cfg.classifiers:
        run.log(
            f"classifier {name}: training ({cfg.steps_for(name)} steps)"
            if cfg.dataset != "imagenet"
            else f"classifier {name}: weights {cfg.weights[name]}"
        )
        models[name], training[name] = train_classifier(run, name)
    run.state["classifiers"], run.state["training"] = models, training
