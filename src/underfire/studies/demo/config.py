"""The demo's settings: which data, seed and training length, and which report sections run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["SECTION_NAMES", "DemoConfig", "configure", "default_out"]

#: The report sections in the order they run (each capability of the library adds one).
SECTION_NAMES = ("classifier", "defenses", "attacks", "interpreters", "adv2", "diagnosis")


@dataclass(frozen=True)
class DemoConfig:
    """What one demo run computes.

    Attributes:
        dataset: an in-memory data set (the embedded ``digits`` by default).
        data_root: where data sets are read from (None: ``$UNDERFIRE_DATA`` or ``./data``).
        seed: seeds the data split, the training and every attack and interpreter.
        epochs: training epochs of the audited classifier.
        sections: the report sections to run, in :data:`SECTION_NAMES` order (None: all).
    """

    dataset: str = "digits"
    data_root: str | None = None
    seed: int = 0
    epochs: int = 15
    sections: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sections"] = list(self.sections) if self.sections is not None else None
        return data

    def runs(self, section: str) -> bool:
        """Whether ``section`` is part of this run."""
        return self.sections is None or section in self.sections


def configure(
    *,
    dataset: str = "digits",
    data_root: str | Path | None = None,
    seed: int = 0,
    epochs: int = 15,
    sections: Sequence[str] | None = None,
) -> DemoConfig:
    """The validated config of a demo run (unknown sections name the known ones)."""
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"dataset must be a data set name such as 'digits', got {dataset!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    chosen: tuple[str, ...] | None = None
    if sections is not None:
        if isinstance(sections, str):
            raise TypeError(
                f"sections must be a list of section names, got the string {sections!r}; "
                f"pass e.g. [{sections!r}]"
            )
        for name in sections:
            if name not in SECTION_NAMES:
                raise ValueError(
                    f"unknown demo section {name!r}; choose from: {', '.join(SECTION_NAMES)}"
                )
        chosen = tuple(n for n in SECTION_NAMES if n in sections) or None
    return DemoConfig(
        dataset=dataset,
        data_root=str(data_root) if data_root is not None else None,
        seed=seed,
        epochs=epochs,
        sections=chosen,
    )


def default_out(config: DemoConfig) -> Path:
    """``underfire-demo`` (the folder README and docs name) for the digits, else per data set."""
    return Path(
        "underfire-demo" if config.dataset == "digits" else f"underfire-demo-{config.dataset}"
    )
