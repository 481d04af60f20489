"""The standard CIFAR recipe's pieces in the trainer: crop-flip augmentation (resumed exactly)
and the one-cycle learning-rate schedule."""

import itertools
import math
from dataclasses import replace

import pytest
import torch

from underfire.checkpoint import load_checkpoint
from underfire.models import model_for_dataset
from underfire.train import TrainConfig, Trainer, scheduled_lr


def _fresh(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return model_for_dataset("ross-cnn", "digits", hidden=32)


class _Interrupt(Exception):
    pass


def test_resume_with_augmentation_is_bit_identical(digits_splits, tmp_path):
    """Stopped mid-epoch (epoch 2 of 20-step epochs) and resumed: the very weights of an
    uninterrupted run, which differ from a run without augmentation."""
    torch.set_num_threads(1)
    train = digits_splits["train"].subset(640)
    cfg = TrainConfig(
        steps=30,
        batch_size=32,
        seed=2,
        checkpoint_every=10,
        lr=0.05,
        optimizer="sgd",
        weight_decay=5e-4,
        lr_schedule="cosine",
        augment="crop-flip",
    )
    reference = _fresh()
    Trainer(reference, config=cfg).fit(train)
    plain = _fresh()
    Trainer(plain, config=replace(cfg, augment="none")).fit(train)

    def stop_at_25(step, _loss):
        if step == 25:
            raise _Interrupt

    path = tmp_path / "run.pt"
    with pytest.raises(_Interrupt):
        Trainer(_fresh(), config=cfg, checkpoint=path, on_step=stop_at_25).fit(train)
    assert load_checkpoint(path).meta["steps"] == 20
    assert load_checkpoint(path).meta["train"]["augment"] == "crop-flip"
    resumed = _fresh(seed=99)  # the weights come from the checkpoint
    result = Trainer(resumed, config=cfg, checkpoint=path).fit(train)
    assert result.resumed_from == 20 and result.steps == 30
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert any(not torch.equal(plain.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_a_checkpoint_without_augmentation_is_not_resumed_with_it(digits_splits, tmp_path):
    from underfire.checkpoint import CheckpointError

    train, path = digits_splits["train"].subset(256), tmp_path / "run.pt"
    Trainer(_fresh(), config=TrainConfig(steps=4, batch_size=64), checkpoint=path).fit(train)
    augmented = TrainConfig(steps=4, batch_size=64, augment="crop-flip")
    with pytest.raises(CheckpointError, match="different training run"):
        Trainer(_fresh(), config=augmented, checkpoint=path).fit(train)


def test_runs_without_augmentation_keep_their_signature():
    """Checkpoints written before augmentation existed hold no "augment": they still resume."""
    plain = Trainer(_fresh(), config=TrainConfig())._run_signature()
    augmented = Trainer(_fresh(), config=TrainConfig(augment="crop-flip"))._run_signature()
    assert "augment" not in plain["train"] and augmented["train"]["augment"] == "crop-flip"


def test_onecycle_warms_up_then_decays_to_zero():
    cfg = TrainConfig(lr=0.2, lr_schedule="onecycle")
    rates = [scheduled_lr(cfg, step, 100) for step in range(100)]
    assert rates[0] == pytest.approx(0.2 / 25) and rates[30] == pytest.approx(0.2)
    assert max(rates) == rates[30]
    assert all(a < b for a, b in itertools.pairwise(rates[:31]))
    assert all(a > b for a, b in itertools.pairwise(rates[30:]))
    assert rates[-1] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 69 / 70)))
    cosine = TrainConfig(lr=0.2, lr_schedule="cosine")
    assert scheduled_lr(cosine, 0, 100) == 0.2 and scheduled_lr(cosine, 50, 100) == pytest.approx(
        0.1
    )


def test_unknown_schedule_is_one_clear_error():
    with pytest.raises(
        ValueError, match="lr_schedule must be one of 'constant', 'cosine', 'onecycle'"
    ):
        TrainConfig(lr_schedule="step")
