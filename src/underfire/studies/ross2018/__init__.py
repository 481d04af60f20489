"""Reproduction of Ross & Doshi-Velez, "Improving the Adversarial Robustness and Interpretability
of Deep Neural Networks by Regularizing their Input Gradients" (AAAI 2018).

Trains six models of the paper's CNN (normal, defensively distilled, FGSM-adversarially
trained, input-gradient regularized, both, certainty-insensitive) and evaluates them:
clean accuracy; FGSM, TGSM and iterated TGSM, white-box and transferred (Figs. 1, 3);
white-box vs substitute black-box (Fig. 2); input-gradient norms and log-probabilities
(Fig. 4); JSMA grids (Fig. 5); input-gradient saliency; and each qualitative claim decided by
a stated rule (:mod:`underfire.studies.ross2018.claims`).

Outputs in ``out``: ``config.json``, ``results.json``, ``figures/*.png``, ``report.md`` and
``report.html``; trained models in ``out/models`` (a second run resumes them) and the
evaluations in ``out/parts`` (reused only for the same settings, models, data and code).

>>> from underfire.studies.ross2018 import run_ross2018
>>> results = run_ross2018("digits", profile="quick", out="runs/ross2018-digits")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from underfire.studies.base import Study
from underfire.studies.registry import register_study
from underfire.studies.ross2018.config import (
    ALL_MODELS,
    MODEL_NAMES,
    PROFILES,
    Ross2018Config,
    configure,
    default_out,
    resolve_config,
)
from underfire.studies.ross2018.parts import PARTS
from underfire.studies.ross2018.report import report, summary
from underfire.studies.runner import run_study


def run_ross2018(
    dataset: str = "mnist",
    *,
    profile: str = "full",
    out: str | Path | None = None,
    force: bool = False,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    config: Ross2018Config | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run the reproduction with :func:`underfire.studies.run_study` and return its results.

    Args:
        dataset: mnist, notmnist, digits, svhn or fashion-mnist.
        profile: "full" (the paper's training), "paper-cpu", "cpu", "quick" or "test"
            (see :mod:`underfire.studies.ross2018.config`).
        out: output folder (default ``runs/ross2018-<dataset>``).
        force: replace the results of a different run in ``out``.
        device, threads, progress, log: see :func:`underfire.studies.run_study`.
        config: a complete configuration (replaces ``dataset``, ``profile`` and overrides).
        **overrides: fields of :class:`Ross2018Config` replacing the profile's values
            (``data_root`` among them).
    """
    cfg = config or resolve_config(dataset, profile, **overrides)
    return run_study(
        STUDY,
        cfg,
        out=out if out is not None else default_out(cfg),
        force=force,
        device=device,
        threads=threads,
        progress=progress,
        log=log,
    )


STUDY = register_study(
    Study(
        name="ross2018",
        title="Ross & Doshi-Velez (AAAI 2018): input-gradient regularization",
        configure=configure,
        parts=PARTS,
        report=report,
        summary=summary,
        default_out=default_out,
    )
)

__all__ = [
    "ALL_MODELS",
    "MODEL_NAMES",
    "PROFILES",
    "STUDY",
    "Ross2018Config",
    "configure",
    "resolve_config",
    "run_ross2018",
]
