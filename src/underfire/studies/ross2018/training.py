"""Data and models of the Ross & Doshi-Velez (AAAI 2018) reproduction.

Six models of the paper's CNN (normal, defensively distilled, FGSM-adversarially trained,
input-gradient regularized, both, certainty-insensitive) and the independent judges of
claim 5, trained by the Trainer with resumable checkpoints in ``out/models`` (a second run
resumes each model where it stopped, or returns at once when it finished).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.attacks import FGSM
from underfire.core.state import freeze
from underfire.data import ImageDataset, load_dataset
from underfire.defenses import AdversarialTraining, GradientRegularization, distill
from underfire.models import model_for_dataset
from underfire.studies.ross2018.config import (
    INSENSITIVE_DBL_LAMBDA,
    Ross2018Config,
    resolve_config,
)
from underfire.train import CrossEntropy, TrainConfig, Trainer, seed_everything

__all__ = ["frozen", "load_data", "objective_for", "train_judges", "train_models"]


def frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter frozen for good, for evaluation only."""
    freeze(model)
    return model.eval()


def _checkpoint(out: Path | None, name: str) -> Path | None:
    return out / "models" / f"{name}.pt" if out is not None else None


def _svhn_gray(ds: ImageDataset) -> ImageDataset:
    """Grayscale 32×32 with per-image contrast normalization, as in the paper's SVHN setup."""
    x = ds.x
    if x.shape[1] == 3:
        x = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    flat = x.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    x = (x - lo) / (hi - lo).clamp_min(1e-6)
    return ImageDataset(x.contiguous(), ds.y, ds.info, ds.split)


def load_data(
    cfg: Ross2018Config, root: str | Path | None = None
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Train/val/test splits of ``cfg.dataset`` (SVHN converted to grayscale, contrast-normalized)."""
    splits = []
    for split in ("train", "val", "test"):
        ds = load_dataset(cfg.dataset, split, root, seed=cfg.seed)
        if not isinstance(ds, ImageDataset):
            raise TypeError(f"{cfg.dataset} is not an in-memory dataset")
        if cfg.dataset == "svhn":
            ds = _svhn_gray(ds)
        splits.append(ds)
    train, val, test = splits
    if cfg.n_train is not None and cfg.n_train < len(train):
        train = train.subset(cfg.n_train)
    return train, val, test


def _gray_svhn(cfg: Ross2018Config) -> dict[str, Any]:
    """Model arguments for the paper's grayscale SVHN (the loader's SVHN is RGB)."""
    return {"in_channels": 1, "mean": [0.5], "std": [0.5]} if cfg.dataset == "svhn" else {}


def _model_factory(cfg: Ross2018Config) -> Callable[[], nn.Module]:
    extra: dict[str, Any] = {"hidden": cfg.hidden, "init": cfg.init} | _gray_svhn(cfg)
    return lambda: model_for_dataset("ross-cnn", cfg.dataset, **extra)


def _judge(name: str, cfg: Ross2018Config) -> nn.Module:
    """A judge architecture of claim 5, small enough to train on a CPU."""
    extra = _gray_svhn(cfg)
    if name == "resnet-small":
        return model_for_dataset("resnet-small", cfg.dataset, depth=8, **extra)
    if name == "densenet-small":
        return model_for_dataset("densenet-small", cfg.dataset, layers_per_block=2, **extra)
    if name == "ross-cnn-avg":
        return model_for_dataset("ross-cnn", cfg.dataset, pooling="avg", hidden=cfg.hidden, **extra)
    raise ValueError(f"unknown judge {name!r}")


def train_judges(
    cfg: Ross2018Config,
    train: ImageDataset,
    val: ImageDataset,
    out: Path | None,
    *,
    device: torch.device,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, nn.Module]:
    """Train (or reload) the independent judges of claim 5: normal training, other
    architectures than the attacked models, each from its own seed (``cfg.seed + 1 + i``);
    checkpoints in ``out/models`` (``out`` None: trained in memory)."""
    judges: dict[str, nn.Module] = {}
    for i, name in enumerate(cfg.judges):
        seed = cfg.seed + 1 + i
        log(f"training judge {name} ({cfg.judge_steps} steps)")
        seed_everything(seed)
        model = _judge(name, cfg)
        Trainer(
            model,
            CrossEntropy(),
            TrainConfig(
                steps=cfg.judge_steps,
                batch_size=128,
                lr=1e-3,
                seed=seed,
                checkpoint_every=max(50, cfg.judge_steps // 10),
            ),
            device=device,
            checkpoint=_checkpoint(out, f"judge-{name}"),
            progress=progress,
            meta={"dataset": cfg.dataset, "experiment": "ross2018", "model": f"judge-{name}"},
        ).fit(train, val)
        judges[name] = frozen(model)
    return judges


def objective_for(name: str, cfg: Ross2018Config) -> Any:
    """The training objective of the reproduction's model ``name`` (not distillation, which
    trains twice: :func:`underfire.defenses.distill`)."""
    if name == "normal":
        return CrossEntropy()
    if name == "gradreg":
        return GradientRegularization(cfg.lam)
    if name == "certainty-insensitive":
        return GradientRegularization(cfg.insensitive_lam, certainty_insensitive=True)
    if name == "insensitive-dbl":  # the authors' sweep script's reading (see EXTRA_MODELS)
        objective = GradientRegularization.from_paper(INSENSITIVE_DBL_LAMBDA, 256)
        objective.name = "insensitive-dbl"
        return objective
    if name == "adv-trained":
        return AdversarialTraining(FGSM(eps=cfg.adv_eps), ratio=cfg.adv_ratio, labels="predicted")
    if name == "both":  # the authors': penalty on the clean half only, FGSM on its forward
        return AdversarialTraining(
            FGSM(eps=cfg.adv_eps),
            ratio=cfg.adv_ratio,
            labels="predicted",
            inner=GradientRegularization(cfg.lam),
            adv_inner=CrossEntropy(),
            craft="train",
            name="both",
        )
    raise ValueError(f"unknown model {name!r}")


def train_models(
    cfg: Ross2018Config,
    train: ImageDataset,
    val: ImageDataset,
    out: Path | None,
    *,
    device: torch.device,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    only: Sequence[str] | None = None,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Train (or reload from ``out/models``; ``out`` None: in memory) every model of
    ``cfg.models`` (or of ``only``, a subset), each from the same seed, so a model trained
    alone is the one the whole run trains; returns the models and each one's training time and
    checkpoint."""
    names = tuple(only) if only is not None else cfg.models
    if set(names) - set(cfg.models):
        raise ValueError(f"only must be a subset of the config's models {cfg.models}, got {names}")
    factory = _model_factory(cfg)
    tcfg = TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every or max(50, cfg.steps // 20),
    )
    models: dict[str, nn.Module] = {}
    info: dict[str, Any] = {}
    meta = {"dataset": cfg.dataset, "data_seed": cfg.seed, "experiment": "ross2018"}
    for name in names:
        ckpt = _checkpoint(out, name)
        log(f"training {name} ({cfg.steps} steps)")
        t0 = time.perf_counter()
        seed_everything(cfg.seed)  # same initialization for every model
        if name == "distilled":
            model = distill(
                factory,
                train,
                val,
                temperature=cfg.temperature,
                config=tcfg,
                device=device,
                checkpoint=ckpt,
                progress=progress,
                meta=meta | {"model": name},
            )
        else:
            model = factory()
            Trainer(
                model,
                objective_for(name, cfg),
                tcfg,
                device=device,
                checkpoint=ckpt,
                progress=progress,
                meta=meta | {"model": name},
            ).fit(train, val)
        models[name] = frozen(model)
        info[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "checkpoint": f"models/{name}.pt" if ckpt is not None else None,
        }
    return models, info


def main(argv: list[str] | None = None) -> int:
    """Train some models of a run into ``OUT/models`` (resumable), e.g. side by side::

        python -m underfire.studies.ross2018.training OUT --profile full --model gradreg

    The checkpoints are those ``underfire reproduce ross2018`` with the same data set, profile
    and ``--out`` trains (same seed, batches and objective), so that run then reuses them.
    """
    import argparse

    parser = argparse.ArgumentParser(description="train models of the ross2018 reproduction")
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--model", action="append", required=True, help="repeatable")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = resolve_config(args.dataset, args.profile, data_root=args.data_root)
    if set(args.model) - set(cfg.models):
        cfg = resolve_config(
            args.dataset,
            args.profile,
            data_root=args.data_root,
            models=tuple(dict.fromkeys(cfg.models + tuple(args.model))),
        )
    train, val, _test = load_data(cfg, cfg.data_root)
    _models, info = train_models(
        cfg, train, val, args.out, device=torch.device("cpu"), log=print, only=args.model
    )
    print(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
