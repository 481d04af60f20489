"""Defenses as training objectives: ``objective(model, x, y) -> loss`` with ``.name``/``.config()``.

>>> from underfire.defenses import GradientRegularization, create
>>> objective = GradientRegularization.from_paper(56_234, batch_size=256)   # lam ≈ 109.8
>>> objective = create("gradreg", lam=110)
>>> Trainer(model, objective, TrainConfig(steps=15_000, batch_size=256, lr=2e-4)).fit(train)

Names (for the CLI and configs): see :func:`names`; each defense registers in
:data:`DEFENSES` where it is defined. Distillation needs two training runs: :func:`distill`
(or :func:`train_teacher`, then ``Distillation(T, teacher=...)``).
"""

from __future__ import annotations

from underfire.defenses.adversarial_training import AdversarialTraining, attack_config
from underfire.defenses.base import DEFENSES, create, names
from underfire.defenses.distillation import (
    Distillation,
    DistillationRun,
    TemperatureCrossEntropy,
    distill,
    teacher_checkpoint,
    train_distilled,
    train_teacher,
)
from underfire.defenses.gradient_regularization import (
    DEFAULT_LAM,
    GradientRegularization,
    input_gradient_penalty,
    paper_lambda_to_lam,
)

__all__ = [
    "DEFAULT_LAM",
    "DEFENSES",
    "AdversarialTraining",
    "Distillation",
    "DistillationRun",
    "GradientRegularization",
    "TemperatureCrossEntropy",
    "attack_config",
    "create",
    "distill",
    "input_gradient_penalty",
    "names",
    "paper_lambda_to_lam",
    "teacher_checkpoint",
    "train_distilled",
    "train_teacher",
]
