"""Defensive distillation (Papernot, McDaniel, Wu, Jha, Swami, IEEE S&P 2016).

Two training runs on the same architecture:

1. the **teacher** is trained with a softmax at temperature T (cross-entropy of
   ``logits / T`` against the true labels): :class:`TemperatureCrossEntropy`;
2. the **student** is trained at the same temperature on the teacher's soft labels
   ``softmax(teacher(x) / T)``: :class:`Distillation`.

The deployed student is evaluated at T = 1: underfire models return logits, so the trained
student *is* the deployed model (its softmax is taken without dividing by T). Training at
T = 50 makes the logits about T times larger, so at T = 1 the softmax saturates and the
gradients of the loss underflow: the gradient masking that FGSM falls for and TGSM does not
(Ross & Doshi-Velez 2018, Carlini & Wagner 2016).

:func:`distill` runs both stages with :class:`underfire.train.Trainer` (checkpointed and
resumable) and returns the student; :func:`train_distilled` also returns the teacher and the
student's training result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from underfire.core.state import freeze, model_state
from underfire.core.validation import check_positive
from underfire.defenses.base import DEFENSES
from underfire.train import TrainConfig, Trainer, TrainResult, seed_everything

__all__ = [
    "Distillation",
    "DistillationRun",
    "TemperatureCrossEntropy",
    "distill",
    "teacher_checkpoint",
    "train_distilled",
    "train_teacher",
]


def _check_temperature(temperature: float) -> float:
    return check_positive(temperature, "temperature")


class TemperatureCrossEntropy:
    """Teacher objective: cross-entropy of ``softmax(logits / T)`` against the true labels.

    Args:
        temperature: the distillation temperature T (Papernot et al. 2016 use up to 100;
            Ross & Doshi-Velez 2018 use 50).
    """

    name = "distillation-teacher"

    def __init__(self, temperature: float = 50.0) -> None:
        self.temperature = _check_temperature(temperature)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x) / self.temperature, y)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature}


class Distillation:
    """Student objective: cross-entropy at temperature T against the teacher's soft labels.

    ``loss = −mean_i Σ_k softmax(t(x_i)/T)_k · log softmax(s(x_i)/T)_k`` where ``t`` is the
    frozen teacher and ``s`` the student being trained. The deployed student is used at
    T = 1 (its raw logits); see the module docstring.

    Args:
        temperature: the temperature T of both the soft labels and the student's softmax.
        teacher: the trained teacher (kept in eval mode, never updated). Required to train;
            :func:`distill` provides it.
    """

    name = "distillation"

    def __init__(self, temperature: float = 50.0, *, teacher: nn.Module | None = None) -> None:
        self.temperature = _check_temperature(temperature)
        self.teacher = teacher

    def soft_labels(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's probabilities at temperature T (N, K), without gradient."""
        if self.teacher is None:
            raise ValueError(
                "Distillation needs a trained teacher: pass teacher=..., or train both stages "
                "with underfire.defenses.distill(...)"
            )
        with model_state(self.teacher), torch.no_grad():
            return F.softmax(self.teacher(x) / self.temperature, dim=1)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        soft = self.soft_labels(x)
        log_p = F.log_softmax(model(x) / self.temperature, dim=1)
        return -(soft * log_p).sum(dim=1).mean()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature}


@dataclass
class DistillationRun:
    """What :func:`train_distilled` did: both models and the student's training result."""

    student: nn.Module
    teacher: nn.Module
    #: the student's :meth:`Trainer.fit` result (``reused`` when its checkpoint had finished)
    result: TrainResult


def distill(
    model_factory: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None = None,
    *,
    temperature: float = 50.0,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
    seed: int | None = None,
) -> nn.Module:
    """Defensive distillation end to end: train a teacher at T, then a student on its soft labels.

    Args:
        model_factory: builds a fresh, untrained model (called once or twice: teacher, student).
        train: training data.
        val: validation data (recorded in the training history).
        temperature: T for both stages (50 in Ross & Doshi-Velez 2018).
        config: training hyperparameters, used for both stages.
        device: where to train.
        checkpoint: the student's checkpoint path; the teacher's goes next to it with the
            suffix ``.teacher`` (both resumable: an existing finished run returns at once).
        progress: progress bars (experiments and CLI only).
        meta: extra metadata for both checkpoints.
        teacher: an already-trained teacher to skip stage 1; it is borrowed (run in eval
            mode, frozen, and given back with its modes and ``requires_grad`` unchanged).
        seed: when given, every random generator is seeded with it before each model is
            built, so teacher and student start from the same weights whether or not the
            teacher was resumed from its checkpoint (what ``underfire train`` does).

    Returns:
        The trained student, in eval mode, to be used at T = 1 (its logits as they are).
    """
    return train_distilled(
        model_factory,
        train,
        val,
        temperature=temperature,
        config=config,
        device=device,
        checkpoint=checkpoint,
        progress=progress,
        meta=meta,
        teacher=teacher,
        seed=seed,
    ).student


def train_distilled(
    model_factory: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None = None,
    *,
    temperature: float = 50.0,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
    seed: int | None = None,
) -> DistillationRun:
    """:func:`distill`, returning the teacher and the student's training result too."""
    temperature = _check_temperature(temperature)
    config = config or TrainConfig()
    meta = dict(meta or {})
    if teacher is None:
        if seed is not None:
            seed_everything(seed)
        teacher = train_teacher(
            model_factory,
            train,
            val,
            temperature=temperature,
            config=config,
            device=device,
            checkpoint=checkpoint,
            progress=progress,
            meta=meta,
        )  # frozen, in eval mode
    # a given teacher is borrowed: Distillation.soft_labels runs it under model_state
    if seed is not None:
        seed_everything(seed)
    student = model_factory()
    # a different seed for the student's initialization is not needed: the teacher is trained
    # at T, the student on soft labels; starting both from the same weights is what the
    # reference implementations do when they share a seed.
    result = Trainer(
        student,
        Distillation(temperature, teacher=teacher),
        copy.deepcopy(config),
        device=device,
        checkpoint=checkpoint,
        progress=progress,
        meta=meta | {"role": "distilled-student"},
    ).fit(train, val)
    student.eval()
    return DistillationRun(student, teacher, result)


def teacher_checkpoint(checkpoint: str | Path) -> Path:
    """Where the teacher of the student checkpoint ``checkpoint`` is saved (``*.teacher.pt``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".teacher" + checkpoint.suffix)


def train_teacher(
    model_factory: Callable[[], nn.Module],
    train: Dataset,
    val: Dataset | None = None,
    *,
    temperature: float = 50.0,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> nn.Module:
    """Stage 1 of defensive distillation: a fresh model trained at temperature T, frozen.

    ``checkpoint`` is the *student's* path; the teacher's is :func:`teacher_checkpoint` of it
    (resumable; a finished teacher is reused at once).
    """
    temperature = _check_temperature(temperature)
    teacher = model_factory()
    Trainer(
        teacher,
        TemperatureCrossEntropy(temperature),
        config or TrainConfig(),
        device=device,
        checkpoint=teacher_checkpoint(checkpoint) if checkpoint is not None else None,
        progress=progress,
        meta=dict(meta or {}) | {"role": "distillation-teacher"},
    ).fit(train, val)
    teacher.eval()
    freeze(teacher)
    return teacher


@DEFENSES.register("distillation")
def _distillation(temperature: float = 50.0) -> Distillation:
    return Distillation(temperature)
