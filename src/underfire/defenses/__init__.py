"""Defenses as training objectives: ``objective(model, x, y) -> loss`` with ``.name``/``.config()``.

>>> from underfire.defenses import GradientRegularization, create
>>> objective = GradientRegularization.from_paper(56_234, batch_size=256)   # lam ≈ 109.8
>>> objective = create("gradreg", lam=110)
>>> Trainer(model, objective, TrainConfig(steps=15_000, batch_size=256, lr=2e-4)).fit(train)

Names (for the CLI and configs): see :func:`names`. Distillation needs two training runs;
:func:`train_defended` trains any defense by name, distillation included.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from underfire.core.registry import Registry
from underfire.defenses.adversarial_training import AdversarialTraining, attack_config
from underfire.defenses.distillation import Distillation, TemperatureCrossEntropy, distill
from underfire.defenses.gradient_regularization import (
    GradientRegularization,
    input_gradient_penalty,
    paper_lambda_to_lam,
)
from underfire.train import CrossEntropy, TrainConfig, Trainer

__all__ = [
    "CLI_OPTIONS",
    "DEFENSES",
    "AdversarialTraining",
    "Distillation",
    "GradientRegularization",
    "TemperatureCrossEntropy",
    "add_cli_arguments",
    "attack_config",
    "create",
    "distill",
    "input_gradient_penalty",
    "names",
    "objective_from_args",
    "objective_from_namespace",
    "paper_lambda_to_lam",
    "prepare_objective",
    "train_defended",
]

#: Ross & Doshi-Velez's MNIST λ = 56,234 at batch 256, in this project's per-example convention.
DEFAULT_LAM = paper_lambda_to_lam(56_234, 256)

DEFENSES: Registry[Any] = Registry("defense")


@DEFENSES.register("normal")
def _normal() -> CrossEntropy:
    return CrossEntropy()


@DEFENSES.register("gradreg")
def _gradreg(lam: float = DEFAULT_LAM) -> GradientRegularization:
    return GradientRegularization(lam)


@DEFENSES.register("certainty-insensitive")
def _certainty_insensitive(lam: float = DEFAULT_LAM) -> GradientRegularization:
    return GradientRegularization(lam, certainty_insensitive=True)


@DEFENSES.register("distillation")
def _distillation(temperature: float = 50.0) -> Distillation:
    return Distillation(temperature)


def _fgsm(adv_eps: float) -> Any:
    from underfire.attacks import FGSM

    return FGSM(eps=adv_eps)


@DEFENSES.register("adversarial")
def _adversarial(adv_eps: float = 0.3, adv_ratio: float = 0.5) -> AdversarialTraining:
    return AdversarialTraining(_fgsm(adv_eps), ratio=adv_ratio, labels="predicted")


@DEFENSES.register("pgd-adversarial")
def _pgd_adversarial(
    adv_eps: float = 0.3,
    adv_ratio: float = 1.0,
    adv_steps: int = 10,
    adv_step_size: float | None = None,
) -> AdversarialTraining:
    from underfire.attacks import PGD

    step_size = adv_step_size if adv_step_size is not None else 2.5 * adv_eps / adv_steps
    return AdversarialTraining(
        PGD(eps=adv_eps, step_size=step_size, steps=adv_steps),
        ratio=adv_ratio,
        labels="true",
        name="pgd-adversarial",
    )


@DEFENSES.register("both")
def _both(
    lam: float = DEFAULT_LAM, adv_eps: float = 0.3, adv_ratio: float = 0.5
) -> AdversarialTraining:
    return AdversarialTraining(
        _fgsm(adv_eps),
        ratio=adv_ratio,
        labels="predicted",
        inner=GradientRegularization(lam),
        name="both",
    )


def names() -> list[str]:
    """The registered defense names."""
    return DEFENSES.names()


def create(name: str, **kwargs: Any) -> Any:
    """Build the objective registered as ``name`` (e.g. ``create("gradreg", lam=110)``).

    Raises:
        UnknownNameError: for an unknown name (the message lists the known ones).
        TypeError: for an option that the defense does not take.
    """
    factory = DEFENSES.get(name)
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        options = ", ".join(accepted) or "none"
        raise TypeError(
            f"defense {name!r} does not take {', '.join(unknown)}; its options: {options}"
        )
    return factory(**kwargs)


def objective_from_args(name: str, **kwargs: Any) -> Any:
    """Like :func:`create`, but ignores options left at ``None`` (CLI defaults).

    An option given explicitly (not None) that the defense does not use is an error, so
    ``--lam`` with ``--defense distillation`` is reported rather than silently dropped.
    """
    return create(name, **{k: v for k, v in kwargs.items() if v is not None})


#: CLI options of ``underfire train --defense``: (flag, argparse keyword arguments).
CLI_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    (
        "--defense",
        {"default": "normal", "help": "training objective: " + ", ".join(DEFENSES.names())},
    ),
    (
        "--lam",
        {
            "type": float,
            "default": None,
            "help": f"gradient-regularization weight, per-example convention (default {DEFAULT_LAM:.1f} = paper λ 56,234 at batch 256)",
        },
    ),
    (
        "--paper-lambda",
        {
            "type": float,
            "default": None,
            "help": "gradient-regularization λ in the paper's batch-averaged convention (converted with the batch size)",
        },
    ),
    (
        "--temperature",
        {"type": float, "default": None, "help": "distillation temperature (default 50)"},
    ),
    ("--adv-eps", {"type": float, "default": None, "help": "adversarial-training ε (default 0.3)"}),
    (
        "--adv-ratio",
        {
            "type": float,
            "default": None,
            "help": "weight of the adversarial term (default 0.5; 1.0 for PGD)",
        },
    ),
    (
        "--adv-steps",
        {"type": int, "default": None, "help": "PGD steps for pgd-adversarial (default 10)"},
    ),
    (
        "--adv-step-size",
        {"type": float, "default": None, "help": "PGD step size (default 2.5·ε/steps)"},
    ),
]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add :data:`CLI_OPTIONS` to an argparse parser (``underfire train``)."""
    for flag, kwargs in CLI_OPTIONS:
        parser.add_argument(flag, **kwargs)


def objective_from_namespace(args: argparse.Namespace, batch_size: int | None = None) -> Any:
    """The objective described by parsed :data:`CLI_OPTIONS` (``--paper-lambda`` needs ``batch_size``)."""
    lam = getattr(args, "lam", None)
    paper = getattr(args, "paper_lambda", None)
    if paper is not None:
        if lam is not None:
            raise ValueError("give either --lam or --paper-lambda, not both")
        lam = paper_lambda_to_lam(paper, batch_size or 256)
    return objective_from_args(
        args.defense,
        lam=lam,
        temperature=getattr(args, "temperature", None),
        adv_eps=getattr(args, "adv_eps", None),
        adv_ratio=getattr(args, "adv_ratio", None),
        adv_steps=getattr(args, "adv_steps", None),
        adv_step_size=getattr(args, "adv_step_size", None),
    )


def prepare_objective(
    objective: Any,
    model_factory: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None = None,
    *,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> Any:
    """Make ``objective`` ready for :class:`~underfire.train.Trainer`: for a :class:`Distillation`
    without a teacher, train the teacher at T first (checkpoint ``<checkpoint>.teacher.pt``,
    resumable) and attach it; any other objective is returned unchanged.

    This is what ``underfire train --defense distillation`` does before training the student.
    """
    if not (isinstance(objective, Distillation) and objective.teacher is None):
        return objective
    teacher = model_factory()
    teacher_ckpt = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        teacher_ckpt = checkpoint.with_name(checkpoint.stem + ".teacher" + checkpoint.suffix)
    Trainer(
        teacher,
        TemperatureCrossEntropy(objective.temperature),
        config,
        device=device,
        checkpoint=teacher_ckpt,
        progress=progress,
        meta=dict(meta or {}) | {"role": "distillation-teacher"},
    ).fit(train, val)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return Distillation(objective.temperature, teacher=teacher)


def train_defended(
    objective: Any,
    model_factory: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None = None,
    *,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> nn.Module:
    """Train a fresh model with any defense objective, distillation included (two stages).

    Args:
        objective: from :func:`create` / :func:`objective_from_args`, or any objective.
        model_factory: builds a fresh model (twice for distillation: teacher, student).
        train, val: data.
        config, device, checkpoint, progress, meta: as for :class:`underfire.train.Trainer`.

    Returns:
        The trained model in eval mode (for distillation, the student, used at T = 1).
    """
    if isinstance(objective, Distillation) and objective.teacher is None:
        return distill(
            model_factory,
            train,
            val,
            temperature=objective.temperature,
            config=config,
            device=device,
            checkpoint=checkpoint,
            progress=progress,
            meta=meta,
        )
    model = model_factory()
    Trainer(
        model, objective, config, device=device, checkpoint=checkpoint, progress=progress, meta=meta
    ).fit(train, val)
    model.eval()
    return model
