"""Configuration of the Ross & Doshi-Velez (AAAI 2018) reproduction: one dataclass, profiles as data.

Profiles:

- ``full``: the paper's training (Adam, lr 2e-4, 15,000 batches of 256) and the whole test
  set for the attacks (a GPU, or a CPU across several sessions: a checkpoint every 200 steps,
  and a second run with the same ``--out`` resumes each model where it stopped).
- ``paper-cpu``: the paper's batch, learning rate and λ for the six models, for as many
  steps as fit in about 2 hours on a 2-core CPU
  (:data:`PAPER_CPU_STEPS`); clean accuracy on the whole test set, attacks on 1,000 images.
- ``cpu``: the largest setting that fits in about an hour on a 2-core CPU for 28×28 data
  (fewer steps, a higher learning rate to compensate, 500 evaluation images).
- ``quick``: minutes on a CPU (meant for ``--dataset digits``).
- ``test``: seconds, for the test suite only.

The gradient-regularization weight is given in the paper's batch-averaged convention
(``paper_lambda``, the values chosen on validation by the authors) and converted to the
project's per-example ``lam = paper_lambda / (2·256)``, see
:mod:`underfire.defenses.gradient_regularization`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from underfire.defenses import paper_lambda_to_lam
from underfire.studies.profiles import (
    check_at_least,
    config_from_dict,
    config_to_dict,
    layered_settings,
)

__all__ = [
    "ALL_MODELS",
    "DATASETS",
    "EXTRA_MODELS",
    "INSENSITIVE_DBL_LAMBDA",
    "INSENSITIVE_LAMBDA",
    "JUDGES",
    "MODEL_NAMES",
    "PAPER_LAMBDA",
    "PROFILES",
    "Ross2018Config",
    "configure",
    "default_out",
    "resolve_config",
]

#: The six models compared (paper Figs. 1–5), in display order.
MODEL_NAMES = ("normal", "distilled", "adv-trained", "gradreg", "both", "certainty-insensitive")
#: Extra models, trained only when the caller asks (``models=``): ``insensitive-dbl`` is a weak
#: double backpropagation (the *true* labels' penalty) at λ = :data:`INSENSITIVE_DBL_LAMBDA`,
#: what the authors' sweep script ``scripts/train_all.py`` would train with ``--l2dbl`` for its
#: "insensitive" models. That script has a syntax error (it was not run as published) and the
#: authors' figures show a certainty-insensitive model as strongly regularized as gradreg, so it
#: is *not* the authors' insensitive model: that is ``certainty-insensitive`` at
#: :data:`INSENSITIVE_LAMBDA`.
EXTRA_MODELS = ("insensitive-dbl",)
ALL_MODELS = MODEL_NAMES + EXTRA_MODELS
#: λ (paper convention) of the ``insensitive-dbl`` model: the top of the sweep's logspace(0, 3, 13).
INSENSITIVE_DBL_LAMBDA = 1_000.0
#: Independent judges of claim 5 (a proxy for human judgement): normally trained models of
#: other architectures than the attacked ones (``ross-cnn-avg``: the paper's CNN with average
#: pooling, trained from another seed).
JUDGES = ("resnet-small", "densenet-small", "ross-cnn-avg")

DATASETS = ("mnist", "notmnist", "digits", "svhn", "fashion-mnist")

#: λ chosen by the authors on validation (batch-averaged convention, batch 256). digits and
#: fashion-mnist are not in the paper: project choices, not tuned on validation (digits: 512,
#: i.e. lam = 1 per example, which keeps clean accuracy within a few points of the normal
#: model in the quick profile; fashion-mnist: MNIST's value / 10, as its clean accuracy
#: suffers more from a strong penalty).
PAPER_LAMBDA = {
    "mnist": 56_234.0,
    "notmnist": 562.3,
    "svhn": 10_000.0,
    "digits": 512.0,
    "fashion-mnist": 5_623.0,
}

#: λ of the certainty-insensitive model (the penalty of the input gradient of the cross-entropy
#: against the uniform labels; paper convention, batch 256), per data set: the authors' models
#: are ``mnist-insensitive-1000.0``, notMNIST 177.8, SVHN 1,000 (their MNIST notebook reports
#: 99.44 % clean accuracy for it). At gradreg's 56,234 it does not train at the ``paper-cpu``
#: budget (accuracy .164–.370 over 300 steps, vs .756–.912 at 1,000; issue 22). digits and
#: fashion-mnist are project choices (not tuned): digits keeps its gradreg value, fashion-mnist
#: MNIST's / 10 as for gradreg.
INSENSITIVE_LAMBDA = {
    "mnist": 1_000.0,
    "notmnist": 177.8,
    "svhn": 1_000.0,
    "digits": 512.0,
    "fashion-mnist": 100.0,
}


@dataclass(frozen=True)
class Ross2018Config:
    """Everything that determines a reproduction run (saved as ``config.json`` next to results).

    Attributes:
        dataset: one of :data:`DATASETS`.
        profile: the profile name the run started from.
        seed: seeds the data split, initializations and attacks.
        steps: optimizer steps per model (the paper: 15,000).
        batch_size: training batch size (the paper: 256).
        lr: Adam learning rate (the paper: 2e-4).
        hidden: width of the fully connected layer (the paper: 1024).
        paper_lambda: gradient-regularization λ in the paper's convention (batch 256), of
            gradreg and of "both" (the authors sweep λ for "both" and do not publish theirs).
        insensitive_lambda: λ of the certainty-insensitive model, same convention
            (:data:`INSENSITIVE_LAMBDA`).
        temperature: distillation temperature (the paper: 50).
        adv_eps: FGSM ε of adversarial training (the paper: 0.3).
        adv_ratio: weight of the adversarial term (the paper: ½).
        eps: the ε grid of the FGSM/TGSM evaluation (the paper: 0, 0.1, …, 0.7).
        itgsm_steps: steps of the iterated TGSM (BIM toward t = (y+1) mod K, step ε/steps);
            the paper does not give its step count, 10 is the project's choice.
        n_train: training images used (None: all).
        n_eval: test images attacked (None: the whole test set).
        substitute_seed_size: the substitute's initial set S₀ (Papernot et al. 2017: 150).
        substitute_rounds: Jacobian augmentation rounds ρ (Papernot et al.: 6).
        substitute_epochs: substitute training epochs per round.
        jsma_gamma: JSMA's largest fraction of modified features (the paper: 0.25).
        jsma_theta: JSMA's feature change (the paper: 1).
        jsma_on: JSMA's forward derivative: "logits" (the authors' code) or "probabilities"
            (cleverhans ≥ 2.1's SaliencyMapMethod); see :class:`underfire.attacks.JSMA`.
        init: initialization of the paper's CNN: "paper" (TF-slim's Glorot-uniform, as the
            authors) or "torch" (PyTorch's default, what the project used before).
        judges: architectures of the independent judges of claim 5 (see :data:`JUDGES`).
        judge_steps: training steps of each judge (batch 128, Adam lr 1e-3, cross-entropy).
        checkpoint_every: steps between training checkpoints (None: steps/20, at least 50).
        n_saliency: test images shown in the saliency figure.
        eval_batch: batch size of attacks and evaluation.
        data_root: dataset folder (None: the loader's default); the results do not depend
            on it (the parts are keyed on the data's content, not its location).
    """

    dataset: str = "mnist"
    profile: str = "full"
    seed: int = 0
    steps: int = 15_000
    batch_size: int = 256
    lr: float = 2e-4
    hidden: int = 1024
    paper_lambda: float = 56_234.0
    insensitive_lambda: float = 1_000.0
    temperature: float = 50.0
    adv_eps: float = 0.3
    adv_ratio: float = 0.5
    eps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    itgsm_steps: int = 10
    n_train: int | None = None
    n_eval: int | None = None
    substitute_seed_size: int = 150
    substitute_rounds: int = 6
    substitute_epochs: int = 10
    jsma_gamma: float = 0.25
    jsma_theta: float = 1.0
    n_saliency: int = 6
    eval_batch: int = 500
    models: tuple[str, ...] = field(default=MODEL_NAMES)
    jsma_on: str = "logits"
    init: str = "paper"
    judges: tuple[str, ...] = field(default=JUDGES)
    judge_steps: int = 1_000
    checkpoint_every: int | None = None
    data_root: str | None = None
    #: A human-subject study folder (`underfire study`) whose analysis decides claim 5's
    #: "people" half; None: the model judges stand in for people.
    human_study: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        check_at_least(
            self,
            1,
            "steps",
            "batch_size",
            "hidden",
            "itgsm_steps",
            "substitute_seed_size",
            "substitute_rounds",
            "substitute_epochs",
            "eval_batch",
            "judge_steps",
        )
        if not self.lr > 0 or not self.temperature > 0:
            raise ValueError("lr and temperature must be > 0")
        if self.paper_lambda < 0 or self.insensitive_lambda < 0:
            raise ValueError("paper_lambda and insensitive_lambda must be ≥ 0")
        if (
            not self.eps
            or any(e < 0 or e > 1 for e in self.eps)
            or list(self.eps) != sorted(self.eps)
        ):
            raise ValueError(f"eps must be an increasing list of values in [0, 1], got {self.eps}")
        unknown = set(self.models) - set(ALL_MODELS)
        if unknown or "normal" not in self.models or "gradreg" not in self.models:
            raise ValueError(
                f"models must be a subset of {ALL_MODELS} including normal and gradreg, got {self.models}"
            )
        if self.jsma_on not in ("logits", "probabilities"):
            raise ValueError(f"jsma_on must be 'logits' or 'probabilities', got {self.jsma_on!r}")
        if self.init not in ("paper", "torch"):
            raise ValueError(f"init must be 'paper' or 'torch', got {self.init!r}")
        if set(self.judges) - set(JUDGES):
            raise ValueError(f"judges must be a subset of {JUDGES}, got {self.judges}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be ≥ 1, got {self.checkpoint_every}")
        for n in (self.n_train, self.n_eval):
            if n is not None and n < 2:
                raise ValueError("n_train and n_eval must be ≥ 2 (or None for all)")

    @property
    def lam(self) -> float:
        """The per-example gradient-regularization weight used by the project."""
        return paper_lambda_to_lam(self.paper_lambda, 256)

    @property
    def insensitive_lam(self) -> float:
        """The per-example weight of the certainty-insensitive model."""
        return paper_lambda_to_lam(self.insensitive_lambda, 256)

    def to_dict(self) -> dict[str, Any]:
        d = config_to_dict(self)
        d["lam_per_example"] = self.lam
        d["insensitive_lam_per_example"] = self.insensitive_lam
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ross2018Config:
        return config_from_dict(cls, data)


#: Steps of the ``paper-cpu`` profile: what fits in about 2 hours on the project's 2-core CPU
#: for the six models at the paper's batch of 256 with one thread (measured CPU seconds per
#: step before issue 22: normal 0.31, distilled ≈ 0.63, adv-trained 0.89, gradreg 0.74,
#: certainty-insensitive 0.78; "both" was 1.84 with the penalty on both halves and is cheaper
#: now, the penalty on the clean half only; docs/ross2018.md).
#: 900 until 2026-12-04; raised to 1,000 (≈ 10 more minutes) when gradreg's accuracy along
#: training showed it crossing 0.98 there (0.9796 at 900, 0.9806 at 1,000; docs/ross2018.md).
PAPER_CPU_STEPS = 1000

#: Profile name → settings (the dataset's λ is filled in by :func:`resolve_config`).
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"checkpoint_every": 200},
    "paper-cpu": {
        "steps": PAPER_CPU_STEPS,
        "batch_size": 256,
        "lr": 2e-4,
        "n_eval": 1000,
        "eval_batch": 250,
        "substitute_epochs": 5,
        "models": MODEL_NAMES,
        "checkpoint_every": 100,
        "judge_steps": 600,
    },
    "cpu": {
        "steps": 250,
        "batch_size": 128,
        "lr": 1e-3,
        "n_eval": 500,
        "eval_batch": 250,
        "substitute_epochs": 5,
        "n_saliency": 6,
        "judge_steps": 500,
    },
    "quick": {
        "steps": 250,
        "batch_size": 64,
        "lr": 2e-3,
        "n_eval": 359,
        "substitute_rounds": 5,
        "substitute_epochs": 4,
        "judge_steps": 250,
    },
    "test": {
        "steps": 30,
        "batch_size": 64,
        "lr": 3e-3,
        "hidden": 64,
        "n_train": 400,
        "n_eval": 80,
        "substitute_seed_size": 40,
        "substitute_rounds": 2,
        "substitute_epochs": 3,
        "eps": (0.0, 0.2, 0.4),
        "itgsm_steps": 3,
        "n_saliency": 3,
        "jsma_gamma": 0.25,
        "judge_steps": 20,
    },
}


def resolve_config(dataset: str, profile: str = "full", **overrides: Any) -> Ross2018Config:
    """The configuration of ``profile`` for ``dataset``, with explicit ``overrides`` applied last.

    Raises:
        ValueError: unknown profile/dataset or invalid values.
    """
    dataset = dataset.lower().replace("_", "-")
    settings = layered_settings(
        dataset,
        profile,
        datasets=DATASETS,
        profiles=PROFILES,
        layers=(
            {
                "paper_lambda": PAPER_LAMBDA.get(dataset),
                "insensitive_lambda": INSENSITIVE_LAMBDA.get(dataset),
            },
            PROFILES.get(profile, {}),
        ),
        overrides=overrides,
        tuples=("models",),
        floats=("eps",),
    )
    if settings.get("data_root") is not None:
        settings["data_root"] = str(settings["data_root"])
    return replace(Ross2018Config(), **settings)


def configure(
    dataset: str = "mnist",
    profile: str | None = None,
    *,
    quick: bool = False,
    data_root: str | Path | None = None,
    seed: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    n_eval: int | None = None,
    paper_lambda: float | None = None,
    models: tuple[str, ...] | list[str] | None = None,
    human_study: str | Path | None = None,
) -> Ross2018Config:
    """The config of ``underfire reproduce ross2018``: the profile ("full" unless ``profile``
    or ``quick`` say otherwise) for ``dataset``, with the options given (None: the profile's).

    Raises:
        ValueError: ``quick`` with another profile, or an invalid value.
    """
    if quick and profile not in (None, "quick"):
        raise ValueError(f"quick runs the 'quick' profile; drop quick or profile={profile!r}")
    return resolve_config(
        dataset,
        profile or ("quick" if quick else "full"),
        data_root=data_root,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        n_eval=n_eval,
        paper_lambda=paper_lambda,
        models=models,
        human_study=str(human_study) if human_study is not None else None,
    )


def default_out(config: Ross2018Config) -> Path:
    """Where a run writes when no folder is given."""
    return Path("runs") / f"ross2018-{config.dataset}"
