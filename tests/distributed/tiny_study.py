"""A study whose attack part is sharded, and ``evaluate``, in one process or under ``torchrun``.

``python tiny_study.py OUT`` runs the study into ``OUT/study`` (rank 0 writes it) and saves
``evaluate``'s metrics and the study's results, as rank 0 holds them, to ``OUT/results.pt``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from underfire.attacks import FGSM, PGD
from underfire.core import distributed
from underfire.data import load_dataset
from underfire.models import model_for_dataset
from underfire.studies import Part, Study, StudyRun, gather, run_study, shard
from underfire.train import evaluate

IMAGES = 45  # not divisible by two ranks: blocks of 23 and 22


@dataclass(frozen=True)
class Config:
    eps: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return model_for_dataset("ross-cnn", "digits").eval()


def attacked(run: StudyRun) -> dict[str, torch.Tensor]:
    """Per image: FGSM's and PGD's adversarial examples and whether they are still right."""
    net, test = model(), load_dataset("digits", "test")
    x, y = test.x[:IMAGES], test.y[:IMAGES]
    block = shard(run, IMAGES)
    out: dict[str, torch.Tensor] = {}
    attacks = {
        "fgsm": FGSM(eps=run.config.eps),
        "pgd": PGD(eps=run.config.eps, steps=5, random_start=False),
    }
    for name, attack in attacks.items():
        x_adv = attack(net, x[block], y[block])
        with torch.no_grad():
            right = net(x_adv).argmax(1) == y[block]
        out[f"{name}_x"] = gather(run, x_adv)
        out[f"{name}_right"] = gather(run, right)
    return out


def report(run: StudyRun) -> None:
    assert run.out is not None
    right = run.results["attacked"]["pgd_right"]
    (run.out / "report.md").write_text(f"PGD accuracy {right.double().mean().item():.4f}\n")
    (run.out / "report.html").write_text("<p>see report.md</p>\n")


STUDY = Study(
    name="sharded-attack",
    title="a sharded attack part",
    configure=Config,
    parts=(Part("attacked", attacked, store="torch"),),
    report=report,
    results_file=lambda results: {
        "pgd_accuracy": results["attacked"]["pgd_right"].double().mean().item()
    },
)


def metrics() -> dict[str, float]:
    return evaluate(model(), load_dataset("digits", "test"), batch_size=64)


if __name__ == "__main__":
    torch.set_num_threads(1)
    distributed.init("cpu")
    out = Path(sys.argv[1])
    results = run_study(STUDY, out=out / "study")
    evaluated = metrics()
    if distributed.is_main():
        torch.save({"results": results["attacked"], "evaluate": evaluated}, out / "results.pt")
    distributed.teardown()
