"""The parts of the Zheng, Zhang, Lee & Prakash (2020) reproduction up to the robustness
comparison: the data, the trained models and each model's robust accuracy.

Training is resumable through the trainer's own checkpoints in ``OUT/models`` (a finished one
is reused as it is); the parts put the trained models and the data into ``run.state`` for the
later parts. Each model's robust-accuracy curves are one cached sub-part
(``robust/<model>``) keyed on that model's weights and the test data, so a retrained or
replaced model never has its old numbers reused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from underfire._version import __version__
from underfire.attacks import FGSM, PGD, SoundnessWarning
from underfire.core.state import model_state
from underfire.data import ImageDataset, load_dataset
from underfire.defenses import create as create_defense
from underfire.models import model_for_dataset
from underfire.robustness import robust_accuracy
from underfire.studies.base import StudyRun
from underfire.studies.zheng2020.claims import compare_variants
from underfire.studies.zheng2020.config import POOLINGS, Zheng2020Config
from underfire.train import (
    CrossEntropy,
    Objective,
    TrainConfig,
    Trainer,
    evaluate,
    seed_everything,
)

__all__ = [
    "comparison",
    "device",
    "load_data",
    "load_splits",
    "model_names",
    "n_eval",
    "n_test",
    "robust_curves",
    "robustness",
    "settings",
    "train_models",
    "training_objective",
    "version",
]


def model_names(cfg: Zheng2020Config) -> list[str]:
    """``"{pooling}-seed{seed}"`` for every variant and seed, seed-major."""
    return [f"{pool}-seed{s}" for s in cfg.seeds for pool in POOLINGS]


def _seed_of(name: str) -> int:
    return int(name.rsplit("seed", 1)[1])


def load_data(cfg: Zheng2020Config) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Train/val/test splits of ``cfg.dataset`` (split by ``cfg.data_seed``, shared by all
    models) from ``cfg.data_root``."""
    splits = []
    for split in ("train", "val", "test"):
        ds = load_dataset(cfg.dataset, split, cfg.data_root, seed=cfg.data_seed)
        if not isinstance(ds, ImageDataset):
            raise TypeError(f"{cfg.dataset} is not an in-memory dataset")
        splits.append(ds)
    return splits[0], splits[1], splits[2]


def load_splits(run: StudyRun) -> None:
    """Part ``data``: the splits into ``run.state`` (``train``, ``val``, ``test``)."""
    cfg: Zheng2020Config = run.config
    train, val, test = load_data(cfg)
    run.state |= {"train": train, "val": val, "test": test}
    run.log(
        f"{cfg.dataset}: {len(train)} train / {len(val)} val / {len(test)} test images, "
        f"profile {cfg.profile}, seeds {list(cfg.seeds)}"
    )


def _train_config(cfg: Zheng2020Config, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        lr_schedule="cosine",
        checkpoint_every=max(50, cfg.steps // 20),
    )


def training_objective(cfg: Zheng2020Config) -> Objective:
    """Cross-entropy (``training="natural"``) or Madry et al.'s PGD adversarial training at
    the grid's largest ε (``"pgd"``: PGD examples only, true labels, ``adv_steps`` steps of
    2.5·ε/steps from a random start), the same for both pooling variants."""
    if cfg.training == "natural":
        return CrossEntropy()
    return create_defense("pgd-adversarial", adv_eps=max(cfg.eps), adv_steps=cfg.adv_steps)


def train_models(run: StudyRun) -> dict[str, Any]:
    """Part ``training``: train (or reload from ``OUT/models``) both pooling variants for
    every seed; the models go into ``run.state["classifiers"]`` (eval mode).

    Both variants of a seed start from the same weights: pooling has no parameters, so
    seeding before construction gives identical initializations, and the trainer's batch
    order depends only on the seed.

    Returns:
        ``{model: {"seconds": training time over every session, "checkpoint", "val_accuracy"}}``.
    """
    cfg: Zheng2020Config = run.config
    models: dict[str, nn.Module] = {}
    info: dict[str, Any] = {}
    for name in model_names(cfg):
        pool, seed = name.split("-", 1)[0], _seed_of(name)
        ckpt = run.out / "models" / f"{name}.pt" if run.out is not None else None
        run.log(f"training {name} ({cfg.steps} steps, {cfg.training})")
        seed_everything(seed)
        model = model_for_dataset("ross-cnn", cfg.dataset, pooling=pool, hidden=cfg.hidden)
        result = Trainer(
            model,
            training_objective(cfg),
            _train_config(cfg, seed),
            device=run.device,
            checkpoint=ckpt,
            progress=run.progress,
            meta={"dataset": cfg.dataset, "experiment": "zheng2020", "model": name},
        ).fit(run.state["train"], run.state["val"])
        models[name] = model.eval()
        info[name] = {
            "seconds": round(result.total_seconds, 2),
            "checkpoint": None if ckpt is None else f"models/{name}.pt",
            "val_accuracy": result.history[-1].get("val_accuracy") if result.history else None,
        }
    run.state["classifiers"] = models
    return info


def n_eval(run: StudyRun) -> int:
    """Part ``n_eval``: the test images the attacks use (the first ``cfg.n_eval``)."""
    test: ImageDataset = run.state["test"]
    return min(run.config.n_eval or len(test), len(test))


def n_test(run: StudyRun) -> int:
    """Part ``n_test``: the test images clean accuracy uses (all of them)."""
    return len(run.state["test"])


def robust_curves(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    *,
    pgd_steps: int,
    seed: int,
    batch_size: int = 500,
) -> dict[str, Any]:
    """Accuracy of ``model`` on (x, y) under white-box L∞ FGSM and PGD for every ε.

    PGD: ``pgd_steps`` signed steps of 2.5·ε/steps from a random start (Madry et al. 2018),
    seeded by ``seed`` so a rerun gives the same numbers. Soundness warnings of
    :func:`underfire.robustness.robust_accuracy` (accuracy rising with ε, PGD weaker than
    FGSM) are counted and returned, not hidden.

    Returns:
        ``{"fgsm": [acc per ε], "pgd": [acc per ε], "n": N, "soundness_warnings": [...]}``.
    """
    eps_l = [float(e) for e in eps]
    out: dict[str, Any] = {"n": int(x.shape[0])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SoundnessWarning)
        for name, attack in (
            ("fgsm", FGSM(eps=max(eps_l))),
            ("pgd", PGD(eps=max(eps_l), steps=pgd_steps, seed=seed)),
        ):
            # every ε attacked on every image, as the paper measures each ε on its own
            r = robust_accuracy(
                model, attack, (x, y), eps_l, batch_size=batch_size, exhaustive=True
            )
            out[name] = [float(a) for a in r["accuracy"]]
    out["soundness_warnings"] = [
        str(w.message) for w in caught if issubclass(w.category, SoundnessWarning)
    ]
    return out


def _model_curves(run: StudyRun, name: str) -> dict[str, Any]:
    """Sub-part ``robust/<name>``: FGSM and PGD curves on the first ``n_eval`` test images
    and clean accuracy on the whole test set."""
    cfg: Zheng2020Config = run.config
    model, test = run.state["classifiers"][name], run.state["test"]
    n_eval = run.results["n_eval"]
    x, y = test.x[:n_eval].to(run.device), test.y[:n_eval].to(run.device)
    with model_state(model, mode="eval", freeze=True):
        r = robust_curves(
            model,
            x,
            y,
            cfg.eps,
            pgd_steps=cfg.pgd_steps,
            seed=_seed_of(name),
            batch_size=cfg.eval_batch,
        )
        r["clean"] = evaluate(model, test, device=run.device)["accuracy"]
    return r


def robustness(run: StudyRun) -> dict[str, Any]:
    """Part ``models``: every model's curves, one cached sub-part per model (reused only for
    the same weights, test data and attack settings)."""
    cfg: Zheng2020Config = run.config
    models: dict[str, nn.Module] = run.state["classifiers"]
    per_model: dict[str, Any] = {}
    for name in run.bar(list(models), "attack"):
        per_model[name] = run.cached(
            f"robust/{name}",
            lambda name=name: _model_curves(run, name),  # type: ignore[misc]
            reads=("eps", "pgd_steps", "n_eval", "eval_batch"),
            uses={"model": models[name], "test": run.state["test"]},
            code=_model_curves,
        )
        run.log(
            f"{name}: clean {per_model[name]['clean']:.3f}, PGD ε={cfg.eps[-1]:g} "
            f"{per_model[name]['pgd'][-1]:.3f}"
        )
    return per_model


def comparison(run: StudyRun) -> dict[str, Any]:
    """Part ``comparison``: statistics over seeds and the verdicts (from the curves)."""
    cfg: Zheng2020Config = run.config
    return compare_variants(run.results["models"], cfg.seeds, cfg.eps)


def settings(run: StudyRun) -> dict[str, Any]:
    """Part ``config``: the settings the results were computed with."""
    return run.config.settings()


def version(run: StudyRun) -> str:
    """Part ``underfire_version``."""
    return __version__


def device(run: StudyRun) -> str:
    """Part ``device``: where the results were computed."""
    return str(run.device)
