"""The demo study (``underfire demo``): a security audit of an interpretable model on the
embedded digits.

It trains a classifier, then runs each selected section (:data:`SECTION_NAMES`: classifier,
defenses, attacks, interpreters, adv2, diagnosis) and writes ``results.json``, figures and a
report (``report.md``, self-contained ``report.html``) to the output folder. Trained models
resume from their checkpoints (``model.pt``, ``defenses/``, ``diagnosis/``); each section's
numbers are cached under the identity of the models and data they were computed from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from underfire.studies.base import Study
from underfire.studies.demo import (
    adv2,
    attacks,
    classifier,
    defenses,
    diagnosis,
    interpreters,
    training,
)
from underfire.studies.demo.config import SECTION_NAMES, DemoConfig, configure, default_out
from underfire.studies.demo.report import write_report
from underfire.studies.registry import register_study
from underfire.studies.runner import run_study


def summary(results: dict[str, Any]) -> list[str]:
    """What the command line prints at the end of a run."""
    return [f"test accuracy {results['classifier']['test_accuracy']:.2%}"]


def run_demo(
    out: str | Path = "underfire-demo",
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    dataset: str = "digits",
    data_root: str | Path | None = None,
    epochs: int = 15,
    sections: list[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run the demo into ``out`` (:func:`underfire.studies.run_study` on :data:`STUDY`);
    returns the results."""
    config = configure(
        dataset=dataset, data_root=data_root, seed=seed, epochs=epochs, sections=sections
    )
    return run_study(STUDY, config, out=out, device=device, progress=progress, log=log)


STUDY = register_study(
    Study(
        name="demo",
        title="security audit of an interpretable classifier on the embedded digits",
        configure=configure,
        parts=(
            *training.PARTS,
            *classifier.PARTS,
            *defenses.PARTS,
            *attacks.PARTS,
            *interpreters.PARTS,
            *adv2.PARTS,
            *diagnosis.PARTS,
        ),
        report=write_report,
        summary=summary,
        default_out=default_out,
    )
)

__all__ = ["SECTION_NAMES", "STUDY", "DemoConfig", "configure", "run_demo", "summary"]
