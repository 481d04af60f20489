"""What every `underfire demo` section receives: data, the trained model, the report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from underfire.data import ImageDataset
from underfire.models import ImageClassifier
from underfire.report import Report

__all__ = ["DemoContext"]


@dataclass
class DemoContext:
    """What every demo section can use and add to."""

    out: Path
    device: torch.device
    seed: int
    dataset: str
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset
    model: ImageClassifier
    report: Report
    results: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda _msg: None

    def figure_path(self, name: str) -> Path:
        return self.out / "figures" / name
