"""Reproduction of Zheng, Zhang, Lee & Prakash (2020), "Understanding and Diagnosing
Vulnerability under Adversarial Attacks" (arXiv 2007.08716): max vs average pooling.

The paper reports that on MNIST and CIFAR-10 average pooling, which loses less information,
is more robust than max pooling. This experiment trains the max- and the average-pooling
variant of the same CNN (``ross-cnn``) with the same budget for several seeds (both variants
of a seed share the initialization and batch order) and measures, per model: clean
accuracy, white-box L∞ FGSM and PGD accuracy over an ε range, and the per-layer diagnosis
(:mod:`underfire.diagnosis`). Whether average pooling came out more robust is decided by a
stated rule (:func:`underfire.experiments.zheng2020_eval.verdict`: the seed ranges of the two
variants do not overlap), not written in advance.

Outputs in ``out``: ``config.json``, ``results.json``, ``figures/*.png``, ``report.md`` and
``report.html``; models in ``out/models`` (a second run reuses them, an interrupted one
resumes) and finished sections in ``out/sections`` (reused when their settings match).

>>> from underfire.experiments.zheng2020 import run_zheng2020
>>> results = run_zheng2020("digits", profile="quick", out="runs/zheng2020-digits")
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire._version import __version__
from underfire.attacks import PGD
from underfire.core import io as _io
from underfire.data import ImageDataset, load_dataset
from underfire.experiments.zheng2020_config import POOLINGS, Zheng2020Config, resolve_config
from underfire.experiments.zheng2020_diagnosis import (
    diagnose_model,
    interpretgan_views,
    summarize_diagnosis,
)
from underfire.experiments.zheng2020_eval import compare_variants, robust_curves
from underfire.models import model_for_dataset
from underfire.studies.claims import prepare_output
from underfire.train import CrossEntropy, TrainConfig, Trainer, evaluate, seed_everything

__all__ = [
    "cached",
    "diagnose_all",
    "interpretgans",
    "load_data",
    "model_names",
    "run_zheng2020",
    "train_models",
]

LABELS = {"max": "max pooling", "avg": "average pooling"}


def model_names(cfg: Zheng2020Config) -> list[str]:
    """``"{pooling}-seed{seed}"`` for every variant and seed, seed-major."""
    return [f"{pool}-seed{s}" for s in cfg.seeds for pool in POOLINGS]


def load_data(
    cfg: Zheng2020Config, root: str | Path | None = None
) -> tuple[ImageDataset, ImageDataset, ImageDataset]:
    """Train/val/test splits of ``cfg.dataset`` (split by ``cfg.data_seed``, shared by all models)."""
    splits = []
    for split in ("train", "val", "test"):
        ds = load_dataset(cfg.dataset, split, root, seed=cfg.data_seed)
        if not isinstance(ds, ImageDataset):
            raise TypeError(f"{cfg.dataset} is not an in-memory dataset")
        splits.append(ds)
    return splits[0], splits[1], splits[2]


def cached(path: Path, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """The value stored at ``path`` when it was computed with the same ``key``; otherwise
    ``compute()``, stored atomically with its key. Makes each finished section resumable."""
    import json

    if path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return stored["value"]
        except (json.JSONDecodeError, OSError, AttributeError):
            pass  # a damaged cache entry is recomputed
    value = compute()
    _io.write_json(path, {"key": key, "value": value})
    return value


def _train_config(cfg: Zheng2020Config, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        seed=seed,
        lr_schedule="cosine",
        checkpoint_every=max(50, cfg.steps // 20),
    )


def _training_key(cfg: Zheng2020Config) -> dict[str, Any]:
    keys = ("dataset", "data_seed", "steps", "batch_size", "lr", "hidden")
    return {k: getattr(cfg, k) for k in keys}


def train_models(
    cfg: Zheng2020Config,
    train: ImageDataset,
    val: ImageDataset,
    out: Path,
    *,
    device: torch.device,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Train (or reload from ``out/models``) both pooling variants for every seed.

    Both variants of a seed start from the same weights: pooling has no parameters, so
    seeding before construction gives identical initializations, and the trainer's batch
    order depends only on the seed.
    """
    models: dict[str, nn.Module] = {}
    info: dict[str, Any] = {}
    for seed in cfg.seeds:
        for pool in POOLINGS:
            name = f"{pool}-seed{seed}"
            ckpt = out / "models" / f"{name}.pt"
            log(f"training {name} ({cfg.steps} steps)")
            seed_everything(seed)
            model = model_for_dataset("ross-cnn", cfg.dataset, pooling=pool, hidden=cfg.hidden)
            t0 = time.perf_counter()
            result = Trainer(
                model,
                CrossEntropy(),
                _train_config(cfg, seed),
                device=device,
                checkpoint=ckpt,
                progress=progress,
                meta={"dataset": cfg.dataset, "experiment": "zheng2020", "model": name},
            ).fit(train, val)
            seconds = round(time.perf_counter() - t0, 2)
            stamp = out / "models" / f"{name}.json"
            if result.steps == result.resumed_from and stamp.exists():
                import json

                seconds = json.loads(stamp.read_text())["seconds"]  # reused: first run's time
            else:
                _io.write_json(stamp, {"seconds": seconds})
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            models[name] = model
            info[name] = {
                "seconds": seconds,
                "checkpoint": str(ckpt.relative_to(out)),
                "val_accuracy": result.history[-1].get("val_accuracy") if result.history else None,
            }
    return models, info


def diagnose_all(
    cfg: Zheng2020Config,
    models: dict[str, nn.Module],
    test: ImageDataset,
    out: Path,
    *,
    device: torch.device,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, dict[str, Any]]:
    """The per-layer diagnosis of every model on the first ``n_diag`` test images (cached in
    ``out/sections``: reused when the training and diagnosis settings match)."""
    n = min(cfg.n_diag, len(test))
    x, y = test.x[:n].to(device), test.y[:n].to(device)
    key = {
        "training": _training_key(cfg),
        "diag_eps": cfg.diag_eps,
        "pgd_steps": cfg.pgd_steps,
        "n_diag": n,
        "layers": None if cfg.layers is None else list(cfg.layers),
    }
    result: dict[str, dict[str, Any]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(models), desc="diagnose", unit="model", dynamic_ncols=True)
    try:
        for name, model in models.items():
            seed = int(name.rsplit("seed", 1)[1])
            result[name] = cached(
                out / "sections" / f"diagnosis-{name}.json",
                key,
                functools.partial(
                    diagnose_model,
                    model,
                    x,
                    y,
                    eps=cfg.diag_eps,
                    pgd_steps=cfg.pgd_steps,
                    seed=seed,
                    layers=cfg.layers,
                    batch_size=cfg.eval_batch,
                ),
            )
            if bar is not None:
                bar.update(1)
            rho = result[name]["correlation"]
            log(
                f"{name}: information loss "
                + ", ".join(
                    f"{v:.3f}" if v is not None else "nan" for v in result[name]["information_loss"]
                )
                + (f"; ρ(loss, amplification) {rho:+.2f}" if rho is not None else "")
            )
    finally:
        if bar is not None:
            bar.close()
    return result


def interpretgans(
    cfg: Zheng2020Config,
    models: dict[str, nn.Module],
    train: ImageDataset,
    test: ImageDataset,
    out: Path,
    *,
    device: torch.device,
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or reload from ``out/interpretgan``) an InterpretGAN for the first seed's model
    of each variant, at the diagnosed layers, and show clean vs PGD images through it.

    Returns:
        ({model: {"layers": {layer: numbers}, "history_last": losses, "seconds"}},
        {model: pictures}) — see :func:`interpretgan_views`.
    """
    from underfire.diagnosis import InterpretGANConfig, train_interpretgan

    seed = cfg.seeds[0]
    n = min(cfg.n_diag, len(test))
    x, y = test.x[:n].to(device), test.y[:n].to(device)
    numbers: dict[str, Any] = {}
    pictures: dict[str, Any] = {}
    for pool in POOLINGS:
        name = f"{pool}-seed{seed}"
        model = models[name]
        log(f"InterpretGAN for {name} ({cfg.gan_steps} steps per layer)")
        t0 = time.perf_counter()
        gan, history = train_interpretgan(
            model,
            train,
            None if cfg.layers is None else list(cfg.layers),
            InterpretGANConfig(
                steps=cfg.gan_steps,
                batch_size=cfg.gan_batch,
                seed=seed,
                checkpoint_every=max(50, cfg.gan_steps // 10),
            ),
            device=device,
            checkpoint=out / "interpretgan" / f"{name}.pt",
            progress=progress,
            meta={"experiment": "zheng2020", "model": name},
        )
        x_adv = PGD(eps=cfg.diag_eps, steps=cfg.pgd_steps, seed=seed)(model, x, y)
        layer_numbers, pictures[name] = interpretgan_views(
            gan, model, x, y, x_adv, n_images=cfg.n_gan_images, batch_size=cfg.eval_batch
        )
        numbers[name] = {
            "layers": layer_numbers,
            "history_last": history[-1] if history else None,
            "seconds": gan.meta.get("seconds", round(time.perf_counter() - t0, 2)),
        }
    return numbers, pictures


def run_zheng2020(
    dataset: str = "mnist",
    *,
    profile: str = "full",
    out: str | Path = "runs/zheng2020",
    data_root: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    config: Zheng2020Config | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run the whole reproduction and write results, figures and the report to ``out``.

    Args:
        dataset: mnist, cifar10 or digits.
        profile: "full", "cpu", "quick" or "test" (see
            :mod:`underfire.experiments.zheng2020_config`).
        out: output folder.
        data_root: dataset folder (None: the loader's default).
        device: torch device.
        progress: progress bars (tqdm) for the CLI.
        log: receives one-line progress messages.
        config: a complete configuration (overrides ``dataset``/``profile``).
        **overrides: fields of :class:`Zheng2020Config` replacing the profile's values.

    Returns:
        The results dict (also written to ``out/results.json``).
    """
    from underfire.experiments import zheng2020_figures as figs
    from underfire.experiments.zheng2020_report import write_report

    t_start = time.perf_counter()
    cfg = config or resolve_config(dataset, profile, **overrides)
    out, device = prepare_output(out, cfg, device)
    train, val, test = load_data(cfg, data_root)
    log(
        f"{cfg.dataset}: {len(train)} train / {len(val)} val / {len(test)} test images, "
        f"profile {cfg.profile}, seeds {list(cfg.seeds)}"
    )
    models, training = train_models(cfg, train, val, out, device=device, progress=progress, log=log)
    timings: dict[str, float] = {"training": round(time.perf_counter() - t_start, 2)}

    n_eval = min(cfg.n_eval or len(test), len(test))
    x, y = test.x[:n_eval].to(device), test.y[:n_eval].to(device)
    # what determines a model's curves: its training (the trainer refuses a checkpoint of
    # other settings) and the attacks; a changed value recomputes the section
    eval_key = {
        "training": _training_key(cfg),
        "eps": list(cfg.eps),
        "pgd_steps": cfg.pgd_steps,
        "n_eval": n_eval,
    }
    t0 = time.perf_counter()
    per_model: dict[str, Any] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(models), desc="attack", unit="model", dynamic_ncols=True)
    try:
        for name, model in models.items():
            seed = int(name.rsplit("seed", 1)[1])

            def compute(model: nn.Module = model, seed: int = seed) -> dict[str, Any]:
                r = robust_curves(
                    model,
                    x,
                    y,
                    cfg.eps,
                    pgd_steps=cfg.pgd_steps,
                    seed=seed,
                    batch_size=cfg.eval_batch,
                )
                r["clean"] = evaluate(model, test, device=device)["accuracy"]
                return r

            per_model[name] = cached(out / "sections" / f"robust-{name}.json", eval_key, compute)
            if bar is not None:
                bar.update(1)
            log(
                f"{name}: clean {per_model[name]['clean']:.3f}, PGD ε={cfg.eps[-1]:g} "
                f"{per_model[name]['pgd'][-1]:.3f}"
            )
    finally:
        if bar is not None:
            bar.close()
    timings["robustness"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    log(
        f"per-layer diagnosis (PGD ε={cfg.diag_eps:.4g} on {min(cfg.n_diag, len(test))} test images)"
    )
    diagnosis = diagnose_all(cfg, models, test, out, device=device, progress=progress, log=log)
    timings["diagnosis"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    gan_numbers: dict[str, Any] = {}
    gan_pictures: dict[str, Any] = {}
    if cfg.gan_steps > 0:
        gan_numbers, gan_pictures = interpretgans(
            cfg, models, train, test, out, device=device, progress=progress, log=log
        )
    timings["interpretgan"] = round(time.perf_counter() - t0, 2)

    results: dict[str, Any] = {
        "config": cfg.to_dict(),
        "underfire_version": __version__,
        "device": str(device),
        "training": training,
        "n_eval": n_eval,
        "n_test": len(test),
        "models": per_model,
        "comparison": compare_variants(per_model, cfg.seeds, cfg.eps),
        "diagnosis": {
            "models": diagnosis,
            "summary": summarize_diagnosis(diagnosis, cfg.seeds),
            "interpretgan": gan_numbers,
        },
    }

    t0 = time.perf_counter()
    log("figures and report")
    fig_paths = figs.make_figures(out / "figures", results, gan_pictures, test.classes)
    timings["figures"] = round(time.perf_counter() - t0, 2)
    timings["total"] = round(time.perf_counter() - t_start, 2)
    results["timings"] = timings
    _io.write_json(out / "results.json", results)
    write_report(out, cfg, results, fig_paths)
    return results
