"""What ``underfire study build`` makes: where the models come from, which examples it crafts
and how many stimuli it keeps (:class:`HumanStudyConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from underfire.core.validation import check_float, check_int
from underfire.studies.profiles import config_to_dict

__all__ = ["HumanStudyConfig", "configure"]


@dataclass(frozen=True)
class HumanStudyConfig:
    """How a study folder is built.

    Attributes:
        source: ``"quick"`` (train small digits models), ``"folder"`` (a ``reproduce
            ross2018`` output folder's ``models/*.pt``) or ``"checkpoints"``.
        folder: the ross2018 output folder (source ``"folder"``).
        checkpoints: checkpoint paths (source ``"checkpoints"``), two or more.
        models: which of a folder's models to compare (empty: normal, distilled, gradreg).
        dataset: the data set of the source images (None: the models' own, from their
            checkpoints' metadata; ``digits`` for ``quick``).
        data_root: where the data set is read from (None: ``$UNDERFIRE_DATA`` or ``./data``).
        seed: seeds the quick models, the choice of sources and the raters' randomization.
        epochs: training epochs of the quick models.
        pairs: how many source images (each attacked toward one target) the study keeps.
        candidates: how many test images are attacked to find ``pairs`` that every model's
            attack turns into the target.
        theta, gamma: JSMA's θ (change per feature) and γ (largest fraction of features).
        checks: attention checks per rater (a clean digit against noise).
        image_px: side of the PNG stimuli in pixels (nearest-neighbour upscaling).
    """

    source: str = "quick"
    folder: str | None = None
    checkpoints: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    dataset: str | None = None
    data_root: str | None = None
    seed: int = 0
    epochs: int = 4
    pairs: int = 8
    candidates: int = 360
    theta: float = 1.0
    gamma: float = 0.25
    checks: int = 2
    image_px: int = 168

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def configure(
    *,
    quick: bool = False,
    folder: str | Path | None = None,
    checkpoints: Sequence[str | Path] = (),
    models: Sequence[str] = (),
    dataset: str | None = None,
    data_root: str | Path | None = None,
    seed: int = 0,
    epochs: int = 4,
    pairs: int = 8,
    candidates: int = 360,
    theta: float = 1.0,
    gamma: float = 0.25,
    checks: int = 2,
    image_px: int = 168,
) -> HumanStudyConfig:
    """The validated config: exactly one of ``quick``, ``folder`` and ``checkpoints``."""
    given = [
        name
        for name, v in (("quick", quick), ("folder", folder), ("checkpoints", checkpoints))
        if v
    ]
    if len(given) != 1:
        raise ValueError(
            "say where the models come from, exactly once: --quick (small digits models), "
            "--from FOLDER (a reproduce ross2018 output) or --checkpoint A.pt --checkpoint B.pt"
            + (f"; got {' and '.join(given)}" if given else "")
        )
    if isinstance(checkpoints, (str, Path)):
        raise TypeError("checkpoints must be a list of paths, not one path")
    if models and (folder is None or isinstance(models, str) or len(models) < 2):
        raise ValueError(
            "--models names two or more of a --from folder's models, e.g. normal,gradreg"
        )
    if checkpoints and len(checkpoints) < 2:
        raise ValueError("a study compares models: give two or more checkpoints")
    for name, value in (("seed", seed), ("checks", checks)):
        check_int(value, name, minimum=0)
    for name, value in (("epochs", epochs), ("pairs", pairs), ("candidates", candidates)):
        check_int(value, name, minimum=1)
    check_int(image_px, "image_px", minimum=16)
    if image_px > 1024:
        raise ValueError(f"image_px must be at most 1024, got {image_px}")
    theta = check_float(theta, "theta", low=-1.0, high=1.0)
    gamma = check_float(gamma, "gamma", low=0.0, high=1.0, low_inclusive=False)
    return HumanStudyConfig(
        source=given[0],
        folder=str(folder) if folder is not None else None,
        checkpoints=tuple(str(c) for c in checkpoints),
        models=tuple(models),
        dataset=dataset if dataset is not None else ("digits" if quick else None),
        data_root=str(data_root) if data_root is not None else None,
        seed=seed,
        epochs=epochs,
        pairs=pairs,
        candidates=candidates,
        theta=theta,
        gamma=gamma,
        checks=checks,
        image_px=image_px,
    )
