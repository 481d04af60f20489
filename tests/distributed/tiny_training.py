"""Train a tiny float64 net on 100 digits, in one process or under ``torchrun``.

Imported by the tests (one process) and run by ``torchrun`` (two): both train from the same
initialization on the same batches, so their weights can be compared.
``python tiny_training.py STEPS OUT`` trains with each of :data:`OBJECTIVES` and saves rank
0's weights and losses to ``OUT/OBJECTIVE.pt``; then resumes ``OUT/one.ckpt`` (left
unfinished by one process) to ``OUT/resumed.pt``, and leaves ``OUT/two.ckpt`` unfinished.
``python tiny_training.py die OUT``: rank 1 dies in the middle of a run checkpointed to
``OUT/die.ckpt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.core import distributed
from underfire.data import load_dataset
from underfire.train import TrainConfig, Trainer

#: global batch: 24 images, 12 per rank with two ranks; 100 images end each epoch with a
#: batch of 4 (shared 2 + 2), so the last, smaller batch is covered too
BATCH, IMAGES = 24, 100


class Images:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def data() -> Images:
    digits = load_dataset("digits", "train")
    return Images(digits.x[:IMAGES].double(), digits.y[:IMAGES])


def tiny_net() -> nn.Module:
    """No batch norm and no dropout: every rank's share is computed as in one process.
    Softplus, not ReLU: a non-zero second derivative, so double backprop matters."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Softplus(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    ).double()
    net.config = {"name": "tiny-test-net", "kwargs": {}}  # what a checkpoint records
    return net


class Stop(Exception):
    """Raised after step :data:`STOP_AT` to leave a run unfinished (every rank at once)."""


STOP_AT, EVERY = 4, 3


def stop_at(step: int, _loss: float) -> None:
    if step == STOP_AT:
        raise Stop


def interrupted(name: str, steps: int, checkpoint: Path) -> None:
    """Train with a checkpoint every :data:`EVERY` steps and stop after :data:`STOP_AT`."""
    try:
        train(name, steps, checkpoint, on_step=stop_at)
    except Stop:
        return
    raise AssertionError("the run was not stopped")


#: every training objective of underfire.defenses, each with a deterministic step
OBJECTIVES = ("cross-entropy", "gradreg", "adversarial", "distillation")


def objective(name: str) -> Any:
    from underfire.defenses import AdversarialTraining, Distillation, GradientRegularization

    if name == "gradreg":
        return GradientRegularization(5.0)
    if name == "adversarial":  # FGSM against the predicted labels, half the loss
        from underfire.attacks import FGSM

        return AdversarialTraining(FGSM(eps=0.1), ratio=0.5)
    if name == "distillation":
        return Distillation(temperature=4.0, teacher=tiny_net().eval())
    return None  # cross-entropy


def train(
    name: str, steps: int, checkpoint: Path | None = None, on_step: Any = None
) -> tuple[nn.Module, Any]:
    model = tiny_net()
    config = TrainConfig(
        steps=steps, batch_size=BATCH, lr=0.05, optimizer="sgd", seed=3, checkpoint_every=EVERY
    )
    trainer = Trainer(model, objective(name), config, checkpoint=checkpoint, on_step=on_step)
    return model, trainer.fit(data())


def save(model: nn.Module, result: Any, path: Path) -> None:
    if distributed.is_main():
        losses = [r["train_loss"] for r in result.history]
        state = {"state": model.state_dict(), "losses": losses, "steps": result.steps}
        torch.save(state | {"resumed_from": result.resumed_from}, path)


def rank_1_dies(step: int, _loss: float) -> None:
    if step == STOP_AT and distributed.rank() == 1:
        os._exit(3)  # no clean-up, no message: as a killed process


if __name__ == "__main__":
    torch.set_num_threads(1)
    distributed.init("cpu")
    if sys.argv[1] == "die":  # rank 1 dies after step STOP_AT
        train("gradreg", 10, Path(sys.argv[2]) / "die.ckpt", on_step=rank_1_dies)
        raise AssertionError("rank 0 went on without rank 1")
    steps, out = int(sys.argv[1]), Path(sys.argv[2])
    for name in OBJECTIVES:
        save(*train(name, steps), out / f"{name}.pt")
    if (out / "one.ckpt").exists():
        save(*train("gradreg", steps, out / "one.ckpt"), out / "resumed.pt")
    interrupted("gradreg", steps, out / "two.ckpt")
    distributed.teardown()
