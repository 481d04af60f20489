"""Configuration of the Zheng, Zhang, Lee & Prakash (2020) reproduction: one dataclass, profiles as data.

The study compares max- and average-pooling variants of the same CNN (``ross-cnn``: two
conv blocks, each followed by a 2×2 pooling, then FC → FC), trained with the same budget from
the same initialization per seed, on MNIST, CIFAR-10 and (beyond the paper, offline)
scikit-learn's digits. The paper's training settings are not public: every value here is a
project choice, recorded in ``config.json``.

Profiles (a profile is a dict of settings; some values differ per dataset, see
:data:`DATASET_PROFILES`):

- ``full``: 5 seeds, long training, the whole test set attacked (use a GPU).
- ``cpu``: ≤ 90 min on a 2-core CPU for MNIST or CIFAR-10 (timed in docs/zheng2020.md).
- ``quick``: ≤ 3 min on a CPU for ``digits`` (run in CI).
- ``test``: seconds, for the test suite only.

:func:`configure` builds the config from the options of ``underfire reproduce zheng2020``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from underfire.studies.profiles import (
    check_at_least,
    config_from_dict,
    config_to_dict,
    dataset_name,
    layered_settings,
)

__all__ = [
    "DATASETS",
    "DATASET_DEFAULTS",
    "DATASET_PROFILES",
    "POOLINGS",
    "PROFILES",
    "TRAININGS",
    "Zheng2020Config",
    "configure",
    "resolve_config",
]

DATASETS = ("mnist", "cifar10", "digits")

#: How the classifiers are trained: ``"natural"`` (cross-entropy on clean images, the
#: project's default) or ``"pgd"`` (Madry et al. 2018 adversarial training at the grid's
#: largest ε, the authors' own MNIST/CIFAR-10 recipe in their ATTA code; issue 24, item 6).
TRAININGS = ("natural", "pgd")

#: The variants compared, in display order.
POOLINGS = ("max", "avg")


@dataclass(frozen=True)
class Zheng2020Config:
    """Everything that determines a reproduction run (saved as ``config.json`` next to results).

    Attributes:
        dataset: one of :data:`DATASETS`.
        profile: the profile name the run started from.
        seeds: one model per pooling variant and seed; both variants of a seed share the
            initialization and the batch order (pooling has no parameters).
        data_seed: seeds the train/val/test split (the same for every model).
        steps: Adam steps per model (the same for both variants).
        batch_size: training batch size.
        lr: Adam learning rate (cosine-decayed to 0).
        hidden: width of the CNN's fully connected layer (Ross & Doshi-Velez's CNN: 1024).
        eps: L∞ radii of the FGSM and PGD sweeps (increasing, in [0, 1], starting at 0).
        pgd_steps: PGD iterations (step 2.5·ε/steps, random start; Madry et al. 2018).
        n_eval: test images attacked (None: the whole test set); clean accuracy always uses
            the whole test set.
        eval_batch: batch size of the attacks.
        diag_eps: ε of the PGD examples diagnosed layer by layer.
        n_diag: test images diagnosed.
        layers: layers diagnosed (None: the diagnosis library's default list for the model).
        gan_steps: InterpretGAN training steps (every layer's generator takes one step per
            step) for the first seed's model of each variant (0: no InterpretGAN).
        gan_batch: InterpretGAN batch size.
        n_gan_images: test images shown clean vs adversarial in the InterpretGAN figure.
        training: one of :data:`TRAININGS`. ``"pgd"`` trains every model on PGD examples
            only (ratio 1, true labels) at ε = the largest ε of ``eps`` (0.3 on MNIST, 8/255
            on CIFAR-10), ``adv_steps`` steps of 2.5·ε/steps from a random start.
        adv_steps: PGD steps per training batch when ``training="pgd"`` (Madry et al.'s MNIST
            model: 40; their CIFAR-10 model: 7).
        data_root: the datasets' folder (None: the loader's default); which data was used is
            recorded by the data's fingerprint, so no result depends on this path.
    """

    dataset: str = "mnist"
    profile: str = "full"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    data_seed: int = 0
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 1e-3
    hidden: int = 1024
    eps: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    pgd_steps: int = 40
    n_eval: int | None = None
    eval_batch: int = 500
    diag_eps: float = 0.1
    n_diag: int = 1000
    layers: tuple[str, ...] | None = None
    gan_steps: int = 3000
    gan_batch: int = 128
    n_gan_images: int = 4
    training: str = "natural"
    adv_steps: int = 40
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        if any(int(s) != s or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative integers, got {self.seeds}")
        if self.training not in TRAININGS:
            raise ValueError(
                f"training must be one of {', '.join(TRAININGS)}, got {self.training!r}"
            )
        check_at_least(
            self,
            1,
            "steps",
            "batch_size",
            "hidden",
            "pgd_steps",
            "eval_batch",
            "gan_batch",
            "adv_steps",
        )
        check_at_least(self, 0, "gan_steps", "n_gan_images", "data_seed")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if (
            len(self.eps) < 2
            or self.eps[0] != 0
            or any(e < 0 or e > 1 for e in self.eps)
            or list(self.eps) != sorted(set(self.eps))
        ):
            raise ValueError(
                f"eps must be a strictly increasing list in [0, 1] starting at 0 with at least one "
                f"ε > 0, got {self.eps}"
            )
        if not 0 < self.diag_eps <= 1:
            raise ValueError(f"diag_eps must be in (0, 1], got {self.diag_eps}")
        if self.n_eval is not None and self.n_eval < 2:
            raise ValueError("n_eval must be ≥ 2 (or None for the whole test set)")
        if self.n_diag < 2:
            raise ValueError(f"n_diag must be ≥ 2, got {self.n_diag}")
        if self.layers is not None and not self.layers:
            raise ValueError("layers must name at least one layer (or be None for the default)")

    def to_dict(self) -> dict[str, Any]:
        d = config_to_dict(self)
        if self.training == "natural":
            # absent from runs recorded before the option existed: their folders stay valid
            # (adv_steps is unused by natural training)
            d.pop("training")
            d.pop("adv_steps")
        return d

    def settings(self) -> dict[str, Any]:
        """:meth:`to_dict` without ``data_root`` (a machine's path, not a setting): the
        ``config`` entry of ``results.json``."""
        d = self.to_dict()
        d.pop("data_root")
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Zheng2020Config:
        return config_from_dict(cls, data)


#: Per-dataset settings every profile starts from: the ε grid (L∞, inputs in [0, 1]) and
#: the diagnosed ε. MNIST/digits: the usual 0–0.3 range; CIFAR-10: 0–8/255.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"eps": (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), "diag_eps": 0.1},
    "digits": {"eps": (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3), "diag_eps": 0.1},
    "cifar10": {
        "eps": (0.0, 1 / 255, 2 / 255, 3 / 255, 4 / 255, 6 / 255, 8 / 255),
        "diag_eps": 2 / 255,
    },
}

#: Profile name → settings shared by every dataset.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "cpu": {"seeds": (0, 1, 2), "pgd_steps": 20, "eval_batch": 250},
    "quick": {
        "seeds": (0, 1, 2),
        "steps": 300,
        "batch_size": 64,
        "lr": 3e-3,
        "hidden": 256,
        "pgd_steps": 10,
        "n_eval": 359,
        "n_diag": 200,
        "gan_steps": 80,
        "gan_batch": 32,
    },
    "test": {
        "seeds": (0, 1),
        "steps": 40,
        "batch_size": 64,
        "lr": 3e-3,
        "hidden": 64,
        "eps": (0.0, 0.1, 0.3),
        "pgd_steps": 3,
        "n_eval": 60,
        "n_diag": 40,
        "gan_steps": 20,
        "gan_batch": 32,
        "n_gan_images": 2,
    },
}

#: (profile, dataset) → settings applied after :data:`PROFILES` (budgets sized by timing).
DATASET_PROFILES: dict[tuple[str, str], dict[str, Any]] = {
    ("full", "cifar10"): {"steps": 30_000},
    ("cpu", "mnist"): {
        "steps": 1000,
        "batch_size": 64,
        "n_eval": 500,
        "n_diag": 200,
        "gan_steps": 150,
        "gan_batch": 32,
    },
    ("cpu", "cifar10"): {
        "steps": 1200,
        "batch_size": 64,
        "hidden": 256,
        "n_eval": 400,
        "n_diag": 200,
        "gan_steps": 100,
        "gan_batch": 32,
    },
    ("cpu", "digits"): {"steps": 1000, "batch_size": 64, "hidden": 256, "n_diag": 359},
}


def resolve_config(dataset: str, profile: str = "full", **overrides: Any) -> Zheng2020Config:
    """The configuration of ``profile`` for ``dataset``, with explicit ``overrides`` applied last.

    Raises:
        ValueError: unknown profile/dataset or invalid values.
    """
    dataset = dataset_name(dataset)
    settings = layered_settings(
        dataset,
        profile,
        datasets=DATASETS,
        profiles=PROFILES,
        layers=(
            DATASET_DEFAULTS.get(dataset, {}),
            PROFILES.get(profile, {}),
            DATASET_PROFILES.get((profile, dataset), {}),
        ),
        overrides=overrides,
        tuples=("seeds", "layers"),
        floats=("eps",),
    )
    return replace(Zheng2020Config(), **settings)


def configure(
    *,
    dataset: str = "mnist",
    profile: str | None = None,
    quick: bool = False,
    data_root: str | Path | None = None,
    seeds: tuple[int, ...] | list[int] | None = None,
    gan_steps: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    n_eval: int | None = None,
    training: str | None = None,
    adv_steps: int | None = None,
) -> Zheng2020Config:
    """The config of ``underfire reproduce zheng2020``: ``profile`` (default ``"full"``;
    ``quick=True`` means ``"quick"`` unless a profile is named) for ``dataset``, with the
    options given replacing the profile's values; ``training="pgd"`` adversarially trains
    every model (see :class:`Zheng2020Config`).

    Raises:
        ValueError: unknown profile or dataset, or invalid values.
    """
    return resolve_config(
        dataset,
        profile or ("quick" if quick else "full"),
        data_root=None if data_root is None else str(data_root),
        seeds=seeds,
        gan_steps=gan_steps,
        steps=steps,
        batch_size=batch_size,
        n_eval=n_eval,
        training=training,
        adv_steps=adv_steps,
    )
