"""``robust_accuracy``, ``transfer_matrix`` and an audit, in one process or under ``torchrun``.

``python tiny_attacks.py OUT`` reads the two digits models that :func:`train_models` saved
to ``OUT/models.pt``, evaluates them (:func:`evaluations`), audits the first (:func:`audited`)
into ``OUT/audit`` (rank 0 writes it) and saves what rank 0 holds to ``OUT/results.pt``.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.attacks import FGSM, PGD
from underfire.core import distributed
from underfire.data import load_dataset
from underfire.models import model_for_dataset
from underfire.robustness import robust_accuracy, transfer_matrix
from underfire.studies.audit import audit

IMAGES = 45  # three batches of 16: rank 0 takes two, rank 1 the last, short one
BATCH = 16
EPS = (0.1, 0.2)
KEEP = 40  # the first 40 examples: 32 of rank 0 and 8 of rank 1

#: The smallest audit that runs every sharded part: clean, the open attacks, CW's batches,
#: the unbounded PGD, the gradients and the maps (two batches of 4). The surrogate is left
#: out: it trains data-parallel, equal to one process only up to float rounding.
AUDIT = {
    "attacks": ("fgsm", "pgd", "cw"),
    "interpreters": ("grad",),
    "eps": (0.1, 0.3),
    "n": 48,
    "n_maps": 8,
    "batch_size": 16,
    "pgd_steps": 5,
    "cw_steps": 5,
    "surrogate": False,
}


def train_models(path: Path) -> None:
    """Two different digits classifiers (a few seconds each), saved to ``path``."""
    from underfire.train import TrainConfig, Trainer

    train = load_dataset("digits", "train")
    states = []
    for seed, epochs in ((0, 3), (1, 1)):
        torch.manual_seed(seed)
        model = model_for_dataset("ross-cnn", "digits")
        Trainer(model, config=TrainConfig(epochs=epochs, batch_size=64, seed=seed)).fit(train)
        states.append(model.state_dict())
    torch.save(states, path)


def models(path: Path) -> tuple[nn.Module, nn.Module]:
    built = []
    for state in torch.load(path):
        model = model_for_dataset("ross-cnn", "digits")
        model.load_state_dict(state)
        built.append(model.eval())
    return built[0], built[1]


def data(n: int = IMAGES) -> tuple[torch.Tensor, torch.Tensor]:
    test = load_dataset("digits", "test")
    return test.x[:n], test.y[:n]


#: The robust_accuracy runs: each attack in the open and the exhaustive mode.
ATTACKS = ("fgsm", "pgd", "both", "seeded", "weak")


def attacks() -> dict[str, Any]:
    fgsm = FGSM(eps=max(EPS))
    pgd = PGD(eps=max(EPS), steps=5, random_start=False)
    return {
        "fgsm": fgsm,
        "pgd": pgd,
        "both": [fgsm, pgd],
        "seeded": PGD(eps=max(EPS), steps=5, seed=3),  # a random start, drawn per batch call
        # weaker than FGSM: the first batch's checks warn (on rank 0, which holds it)
        "weak": PGD(eps=max(EPS), steps=2, step_size=0.005, random_start=False),
    }


def evaluations(a: nn.Module, b: nn.Module) -> dict[str, Any]:
    """Each result, with ``rank_warnings`` (the messages each rank saw) and ``rank_images`` (how many
    images each rank's forward passes of ``a`` took)."""
    pair = data()
    runs: dict[str, Callable[[], dict[str, Any]]] = {}
    for name, attack in attacks().items():
        for mode in ("open", "exhaustive"):
            runs[f"{name}-{mode}"] = functools.partial(
                robust_accuracy, a, attack, pair, EPS, batch_size=BATCH, keep_examples=KEEP,
                exhaustive=mode == "exhaustive", per_sample=True,
            )  # fmt: skip
    # one batch of all 45 images: rank 0 takes it, rank 1 has nothing to attack
    runs["one-batch"] = functools.partial(
        robust_accuracy, a, attacks()["fgsm"], pair, EPS, batch_size=64, keep_examples=KEEP,
        per_sample=True,
    )  # fmt: skip
    runs["transfer"] = functools.partial(
        transfer_matrix,
        {"a": a, "b": b},
        {"a": a, "b": b},
        attacks()["pgd"],
        pair,
        EPS,
        batch_size=BATCH,
        per_sample=True,
    )
    runs |= reproductions(a, b)
    out = {}
    for name, run in runs.items():
        with counted(a) as images, warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = run()
        result["rank_warnings"] = distributed.gather_objects(sorted(str(w.message) for w in seen))
        result["rank_images"] = distributed.gather_objects(images[0])
        out[name] = result
    return out


def reproductions(a: nn.Module, b: nn.Module) -> dict[str, Callable[[], dict[str, Any]]]:
    """The reproductions' own sharded loops: ross2018's transfer matrix, zhang2020's attacks
    (a seeded PGD toward the next class) and maps."""
    from underfire.interpreters import create_interpreter
    from underfire.studies.ross2018.evaluation import transfer_accuracy
    from underfire.studies.zhang2020.measure import maps_of, run_attack

    x, y = data()
    pgd = PGD(eps=max(EPS), steps=5, seed=3)

    def attacked() -> dict[str, Any]:
        x_adv, records = run_attack(pgd, a, x, y, (y + 1) % 10, BATCH)
        return {"x_adv": x_adv, "records": records}

    return {
        "ross2018-transfer": lambda: transfer_accuracy(
            {"a": a, "b": b}, x, y, EPS, targeted=True, batch_size=BATCH
        ),
        "zhang2020-attack": attacked,
        "zhang2020-maps": lambda: {"maps": maps_of(create_interpreter("grad"), a, x, y, BATCH)},
    }


@contextlib.contextmanager
def counted(model: nn.Module) -> Iterator[list[int]]:
    """How many images ``model``'s forward passes take inside (in ``[0]``)."""
    images = [0]

    def count(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        images[0] += args[0].shape[0]

    hook = model.register_forward_pre_hook(count)
    try:
        yield images
    finally:
        hook.remove()


def audited(model: nn.Module, out: Path | None) -> dict[str, Any]:
    """The audit's results, with ``rank_images``: how many images each rank's forward passes took."""
    with counted(model) as images:
        results = audit(model, data(AUDIT["n"]), out=out, **AUDIT)
    return results | {"rank_images": distributed.gather_objects(images[0])}


if __name__ == "__main__":
    torch.set_num_threads(1)
    distributed.init("cpu")
    folder = Path(sys.argv[1])
    a, b = models(folder / "models.pt")
    evaluated = evaluations(a, b)
    results = audited(a, folder / "audit")
    if distributed.is_main():
        torch.save({"evaluations": evaluated, "audit": results}, folder / "results.pt")
    distributed.teardown()
