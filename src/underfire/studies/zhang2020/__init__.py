"""Reproduction of Zhang, Wang, Shen, Ji, Luo and Wang, "Interpretable Deep Learning under
Fire" (USENIX Security 2020): ADV² fools a classifier and its interpreter together.

For every classifier (CIFAR-10: a ResNet and a DenseNet, the paper's two families; MNIST and
digits: the Ross CNN; ImageNet: ResNet-50/DenseNet-169 from user-supplied weights) and every
interpreter (GRAD, CAM — Grad-CAM without a GAP head —, MASK, RTS, and cheap others), the
targeted PGD baseline and ADV² are compared on correctly classified test images with random
target classes: attack success, target confidence, L1 distance and top-k IoU between the
benign and adversarial maps. Then: a transfer table (ADV² aimed at interpreter A, judged by
interpreter B), a benign-noise baseline (how much maps move under a random ±ε perturbation),
the two countermeasures of the paper (ensemble interpretation; RTS^A, RTS retrained with
ADV² examples), and each finding decided by a stated rule (:mod:`.claims`).

Parts: ``setup`` (data), ``models`` (classifiers, resumed from the Trainer's checkpoints in
``OUT/models``), ``classifiers`` (every measurement; its sub-parts, keyed on the classifier,
RTS network and images they use, are stored in ``OUT/parts``), ``claims`` and ``timings``.

>>> from underfire.studies import run_study
>>> results = run_study("zhang2020", out="runs/zhang2020-digits", dataset="digits", quick=True)
"""

from __future__ import annotations

from typing import Any

from underfire.studies.base import Part, Study
from underfire.studies.claims import VERDICT
from underfire.studies.registry import register_study
from underfire.studies.zhang2020.config import (
    PROFILES,
    Zhang2020Config,
    configure,
    default_out,
    resolve_config,
)
from underfire.studies.zhang2020.parts import claims_part, classifiers_part, timings_part
from underfire.studies.zhang2020.report import report
from underfire.studies.zhang2020.setup import setup_part, train_part


def summary(results: dict[str, Any]) -> list[str]:
    """One line per finding: its verdict and statement."""
    return [
        f"finding {c['id']}: {VERDICT[c['held']]} — {c['claim']}" for c in results.get("claims", [])
    ]


STUDY = register_study(
    Study(
        name="zhang2020",
        title="Zhang et al., USENIX Security 2020 (ADV², attacks on interpreters)",
        configure=configure,
        parts=(
            Part("setup", setup_part, cache=False),
            Part("models", train_part, cache=False),
            Part("classifiers", classifiers_part, cache=False),
            Part("claims", claims_part, cache=False),
            Part("timings", timings_part, cache=False),
        ),
        report=report,
        summary=summary,
        default_out=default_out,
    )
)

__all__ = [
    "PROFILES",
    "STUDY",
    "Zhang2020Config",
    "configure",
    "default_out",
    "resolve_config",
    "summary",
]
