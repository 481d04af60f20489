"""Reproduction of Zheng, Zhang, Lee & Prakash (2020), "Understanding and Diagnosing
Vulnerability under Adversarial Attacks" (arXiv 2007.08716): max vs average pooling.

The paper reports that on MNIST and CIFAR-10 average pooling, which loses less information,
is more robust than max pooling. This study trains the max- and the average-pooling variant
of the same CNN (``ross-cnn``) with the same budget for several seeds (both variants of a seed
share the initialization and batch order) and measures, per model: clean accuracy,
white-box L∞ FGSM and PGD accuracy over an ε range, and the per-layer diagnosis
(:mod:`underfire.diagnosis`). Whether average pooling came out more robust is decided by a
stated rule (:func:`underfire.studies.zheng2020.claims.verdict`: the seed ranges of the two
variants do not overlap), not written in advance.

Outputs in ``out``: ``config.json``, ``results.json``, ``figures/*.png``, ``report.md`` and
``report.html``; models in ``out/models`` and InterpretGANs in ``out/interpretgan`` (a second
run reuses them, an interrupted one resumes) and finished results in ``out/parts`` (reused
only for the same models, data and settings).

>>> from underfire.studies import run_study
>>> results = run_study("zheng2020", out="runs/zheng2020-digits", dataset="digits", quick=True)
"""

from __future__ import annotations

from pathlib import Path

from underfire.studies.base import Part, Study
from underfire.studies.registry import register_study
from underfire.studies.zheng2020 import parts
from underfire.studies.zheng2020.config import Zheng2020Config, configure, resolve_config
from underfire.studies.zheng2020.diagnosis import diagnosis
from underfire.studies.zheng2020.report import report, summary


def _default_out(config: Zheng2020Config) -> Path:
    suffix = "" if config.training == "natural" else f"-{config.training}"
    return Path("runs") / f"zheng2020-{config.dataset}{suffix}"


STUDY = register_study(
    Study(
        name="zheng2020",
        title="Zheng et al. 2020: max vs average pooling, per-layer diagnosis, InterpretGAN",
        configure=configure,
        parts=(
            Part("config", parts.settings, cache=False),
            Part("underfire_version", parts.version, cache=False),
            Part("device", parts.device, cache=False),
            Part("data", parts.load_splits, cache=False),
            Part("training", parts.train_models, cache=False),
            Part("n_eval", parts.n_eval, cache=False),
            Part("n_test", parts.n_test, cache=False),
            # the parts below cache one result per model (robust/…, diagnosis/…,
            # interpretgan/…), keyed on that model's weights and the test data
            Part("models", parts.robustness, cache=False),
            Part("comparison", parts.comparison, cache=False),
            Part("diagnosis", diagnosis, cache=False),
        ),
        report=report,
        summary=summary,
        default_out=_default_out,
    )
)

__all__ = ["STUDY", "Zheng2020Config", "configure", "resolve_config"]
