import itertools
import math

import pytest
import torch

from underfire.checkpoint import CheckpointError, load_checkpoint
from underfire.models import model_for_dataset
from underfire.train import CrossEntropy, TrainConfig, Trainer, evaluate


def test_digits_reaches_95_percent(digits_splits, digits_model):
    assert evaluate(digits_model, digits_splits["test"])["accuracy"] >= 0.95


def _fresh(seed=0):
    torch.manual_seed(seed)
    return model_for_dataset("ross-cnn", "digits", hidden=32)


def test_seeded_runs_are_identical(digits_splits):
    cfg = TrainConfig(steps=12, batch_size=32, seed=3)
    a, b = _fresh(), _fresh()
    Trainer(a, config=cfg).fit(digits_splits["train"])
    Trainer(b, config=cfg).fit(digits_splits["train"])
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=False):
        assert torch.equal(pa, pb)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_after_interruption_equals_an_uninterrupted_run(digits_splits, tmp_path, schedule):
    cfg = TrainConfig(steps=30, batch_size=64, seed=1, checkpoint_every=10, lr_schedule=schedule)
    reference = _fresh()
    Trainer(reference, config=cfg).fit(digits_splits["train"])

    def stop_at_25(step, _loss):
        if step == 25:
            raise _Interrupt

    interrupted = _fresh()
    path = tmp_path / "run.pt"
    with pytest.raises(_Interrupt):
        Trainer(interrupted, config=cfg, checkpoint=path, on_step=stop_at_25).fit(
            digits_splits["train"]
        )
    assert load_checkpoint(path).meta["steps"] == 20
    resumed = _fresh(seed=99)  # weights come from the checkpoint, not from this init
    result = Trainer(resumed, config=cfg, checkpoint=path).fit(digits_splits["train"])
    assert result.resumed_from == 20 and result.steps == 30
    for name, value in reference.state_dict().items():
        assert torch.allclose(resumed.state_dict()[name].float(), value.float(), atol=1e-6), name
    # finished runs are reused at once
    again = Trainer(_fresh(), config=cfg, checkpoint=path).fit(digits_splits["train"])
    assert again.resumed_from == 30 and again.seconds == 0.0


def test_checkpoint_of_another_run_is_not_silently_reused(digits_splits, tmp_path):
    path = tmp_path / "run.pt"
    Trainer(_fresh(), config=TrainConfig(steps=2, batch_size=32), checkpoint=path).fit(
        digits_splits["train"]
    )
    with pytest.raises(CheckpointError, match="different training run"):
        Trainer(_fresh(), config=TrainConfig(steps=3, batch_size=32), checkpoint=path).fit(
            digits_splits["train"]
        )


def test_checkpoint_records_metadata(digits_splits, tmp_path):
    path = tmp_path / "run.pt"
    Trainer(
        _fresh(),
        CrossEntropy(),
        TrainConfig(steps=3, batch_size=32),
        checkpoint=path,
        meta={"dataset": "digits"},
    ).fit(digits_splits["train"], digits_splits["val"])
    meta = load_checkpoint(path).meta
    assert meta["dataset"] == "digits" and meta["steps"] == 3
    assert meta["objective"] == {"name": "cross-entropy"} and "val_accuracy" in meta


def test_cosine_schedule_decays_to_zero(digits_splits):
    seen = []
    model = _fresh()
    trainer = Trainer(
        model, config=TrainConfig(steps=10, batch_size=32, lr=0.01, lr_schedule="cosine")
    )
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        trainer.fit(digits_splits["train"])
    finally:
        torch.optim.Adam.step = original
    assert seen[0] == pytest.approx(0.01) and seen[-1] == pytest.approx(
        0.01 * 0.5 * (1 + math.cos(math.pi * 0.9))
    )
    assert all(a > b for a, b in itertools.pairwise(seen))


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="optimizer must be"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_custom_objective_is_used(digits_splits):
    calls = []

    def objective(model, x, y):
        calls.append(x.shape[0])
        return torch.nn.functional.cross_entropy(model(x), y)

    Trainer(_fresh(), objective, TrainConfig(steps=2, batch_size=16)).fit(digits_splits["train"])
    assert calls == [16, 16]


@pytest.mark.shared_data
def test_mnist_one_epoch_learns(shared_data):
    """Behaviour on real data: one short pass over 6k MNIST images already beats 90%."""
    from underfire.data import load_dataset

    train = load_dataset("mnist", "train", root=shared_data).subset(6000)
    test = load_dataset("mnist", "test", root=shared_data).subset(2000)
    model = model_for_dataset("ross-cnn", "mnist", hidden=128)
    Trainer(model, config=TrainConfig(epochs=1, batch_size=64, lr=1e-3)).fit(train)
    assert evaluate(model, test)["accuracy"] > 0.9
