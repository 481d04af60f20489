"""The models a study compares: small digits models trained on the spot (``--quick``), a
``reproduce ross2018`` output folder's ``models/*.pt``, or checkpoints named one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.checkpoint import load_checkpoint
from underfire.data import ImageDataset, load_dataset
from underfire.defenses import GradientRegularization
from underfire.defenses.distillation import distill
from underfire.models import model_for_dataset
from underfire.raters.manifest import DATABASE
from underfire.studies.base import StudyRun
from underfire.train import TrainConfig, Trainer

__all__ = ["QUICK_MODELS", "FOLDER_MODELS", "load_models", "load_sources"]

#: The quick study's models: the paper's three readings of the same CNN.
QUICK_MODELS = ("normal", "distilled", "gradreg")
#: Of a ross2018 folder's models, those the study compares (the paper's Figure 5 pair and the
#: normal baseline); others are used only when named with ``--models``.
FOLDER_MODELS = ("normal", "distilled", "gradreg")
#: Per-example penalty weight of the quick gradient-regularized model (digits, 8×8).
QUICK_LAM = 1.0
#: Distillation temperature (the paper's T).
TEMPERATURE = 50.0


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _train_quick(run: StudyRun) -> dict[str, nn.Module]:
    cfg = run.config
    train = load_dataset("digits", "train", cfg.data_root, seed=cfg.seed)
    val = load_dataset("digits", "val", cfg.data_root, seed=cfg.seed)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=64, lr=2e-3, seed=cfg.seed)
    folder = run.out / "models" if run.out is not None else None
    models: dict[str, nn.Module] = {}
    for name in QUICK_MODELS:
        ckpt = folder / f"{name}.pt" if folder is not None else None
        meta = {"dataset": "digits", "data_seed": cfg.seed, "model": name}
        torch.manual_seed(cfg.seed)  # the same initialization for every model
        run.log(f"training {name} on digits ({cfg.epochs} epochs)")

        def factory() -> nn.Module:
            return model_for_dataset("ross-cnn", "digits")

        if name == "distilled":
            model = distill(
                factory,
                train,
                val,
                temperature=TEMPERATURE,
                config=tcfg,
                checkpoint=ckpt,
                meta=meta,
            )
        else:
            model = factory()
            objective = GradientRegularization(QUICK_LAM) if name == "gradreg" else None
            trainer = Trainer(model, objective, tcfg, checkpoint=ckpt, meta=meta)
            trainer.fit(train, val)
        models[name] = _freeze(model)
    return models


def _folder_checkpoints(folder: Path, names: tuple[str, ...]) -> dict[str, Path]:
    root = folder / "models"
    if not root.is_dir():
        raise FileNotFoundError(
            f"{folder} has no models/ folder; give the output folder of `underfire reproduce "
            "ross2018` (it holds models/normal.pt, models/distilled.pt, models/gradreg.pt)"
        )
    found = {
        p.stem: p
        for p in sorted(root.glob("*.pt"))
        if not p.stem.startswith("judge-") and not p.stem.endswith(".teacher")
    }
    chosen = {n: found[n] for n in names if n in found}
    if len(chosen) < 2:
        raise FileNotFoundError(
            f"{root} holds {', '.join(found) or 'no models'}; a study needs two or more of "
            f"{', '.join(names)} (finish the reproduction first)"
        )
    return chosen


def _checkpoint_names(paths: tuple[str, ...]) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for p in map(Path, paths):
        name = p.stem
        if name in named:
            name = f"{p.parent.name}-{p.stem}"
        if name in named:
            raise ValueError(f"two checkpoints are both named {name!r}: rename one")
        named[name] = p
    return named


def load_models(run: StudyRun) -> None:
    """The compared models into ``run.state["models"]`` (name → frozen model, eval mode) and
    the data set they classify into ``run.state["dataset"]``."""
    cfg = run.config
    if run.out is not None and (run.out / DATABASE).exists():
        raise FileExistsError(
            f"{run.out} holds the answers of a study ({DATABASE}); a study that raters have "
            "answered is never rebuilt: build into another --out"
        )
    if cfg.source == "quick":
        run.state["models"] = _train_quick(run)
        run.state["dataset"] = "digits"
        return
    if cfg.source == "folder":
        paths = _folder_checkpoints(Path(cfg.folder), cfg.models or FOLDER_MODELS)
    else:
        paths = _checkpoint_names(cfg.checkpoints)
    loaded = {name: load_checkpoint(p) for name, p in paths.items()}
    datasets = {c.meta.get("dataset") for c in loaded.values()} - {None}
    if cfg.folder is not None and not datasets:
        datasets = {_folder_dataset(Path(cfg.folder))} - {None}
    dataset = cfg.dataset or (datasets.pop() if len(datasets) == 1 else None)
    if dataset is None:
        raise ValueError(
            "cannot tell which data set the models classify (their checkpoints name "
            f"{sorted(map(str, datasets)) or 'none'}): pass --dataset NAME"
        )
    run.state["models"] = {name: _freeze(c.model) for name, c in loaded.items()}
    run.state["dataset"] = dataset


def _folder_dataset(folder: Path) -> str | None:
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("dataset")
    return value if isinstance(value, str) else None


def load_sources(run: StudyRun) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidate source images (the test split's first ``candidates``) and labels."""
    cfg = run.config
    test = load_dataset(run.state["dataset"], "test", cfg.data_root, seed=cfg.seed)
    if not isinstance(test, ImageDataset):
        raise TypeError(f"{run.state['dataset']} is read from disk per image; use an in-memory set")
    n = min(cfg.candidates, len(test))
    return test.x[:n].clone(), test.y[:n].clone()
