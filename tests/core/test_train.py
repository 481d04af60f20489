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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", float("nan"), "lr must be a finite number"),
        ("lr", float("inf"), "lr must be a finite number"),
        ("lr", 0.0, "lr must be >"),
        ("lr", 1e6, "lr must be ≤"),
        ("momentum", float("nan"), "momentum"),
        ("momentum", 1.0, "momentum must be <"),
        ("weight_decay", -0.1, "weight_decay must be ≥"),
        ("weight_decay", float("inf"), "weight_decay"),
        ("batch_size", 0, "batch_size must be ≥ 1"),
        ("epochs", 2.5, "epochs must be an int"),
        ("steps", 0, "steps must be ≥ 1"),
        ("seed", -1, "seed must be ≥ 0"),
        ("checkpoint_every", True, "checkpoint_every must be an int"),
    ],
)
def test_train_config_refuses_bad_values(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig(**{field: value})


class _NaNAt:
    """Cross-entropy that turns NaN at a given call (a diverging run, made deterministic)."""

    name = "nan-at"

    def __init__(self, at):
        self.at, self.calls = at, 0

    def __call__(self, model, x, y):
        self.calls += 1
        loss = CrossEntropy()(model, x, y)
        return loss * float("nan") if self.calls >= self.at else loss

    def config(self):
        return {"name": self.name, "at": self.at}


def test_non_finite_loss_stops_training_and_saves_nothing_non_finite(digits_splits, tmp_path):
    from underfire.core.errors import NonFiniteError

    path = tmp_path / "run.pt"
    cfg = TrainConfig(steps=10, batch_size=32, checkpoint_every=3)
    model = _fresh()
    with pytest.raises(NonFiniteError, match="training loss became nan at step 5 of 10"):
        Trainer(model, _NaNAt(5), cfg, checkpoint=path).fit(digits_splits["train"])
    saved = load_checkpoint(path)  # the step-3 checkpoint, finite (load would refuse otherwise)
    assert saved.meta["steps"] == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ctrl_c_saves_a_checkpoint_before_the_first_periodic_one(digits_splits, tmp_path):
    import signal

    cfg = TrainConfig(steps=12, batch_size=32, seed=2, checkpoint_every=100)
    reference = _fresh()
    Trainer(reference, config=cfg).fit(digits_splits["train"])

    def ctrl_c_at_4(step, _loss):
        if step == 4:
            signal.raise_signal(signal.SIGINT)

    path = tmp_path / "run.pt"
    # Python's own Ctrl-C handler, as in a terminal (pytest-xdist workers ignore SIGINT)
    runner_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            Trainer(_fresh(), config=cfg, checkpoint=path, on_step=ctrl_c_at_4).fit(
                digits_splits["train"]
            )
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, runner_handler)
    assert load_checkpoint(path).meta["steps"] == 4
    resumed = _fresh(seed=7)
    result = Trainer(resumed, config=cfg, checkpoint=path).fit(digits_splits["train"])
    assert result.resumed_from == 4
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


class _ListData(torch.utils.data.Dataset):
    """Images and labels served one at a time (no ``.y`` tensor to check up front)."""

    def __init__(self, x, y):
        self.items = list(zip(x, y, strict=True))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class _TensorData(_ListData):
    """In-memory tensors ``.x`` and ``.y`` with no label check of their own."""

    def __init__(self, x, y):
        super().__init__(x, y)
        self.x, self.y = x, y


@pytest.mark.parametrize("in_memory", [True, False])
def test_labels_beyond_the_models_classes_are_refused_with_one_clear_error(
    digits_splits, in_memory
):
    train = digits_splits["train"].subset(64)
    y = train.y.clone()
    y[5] = 12  # a 13-class label for a 10-class model
    data = _TensorData(train.x, y) if in_memory else _ListData(train.x, y)
    model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"labels in \[0, 12\], but the model has 10 classes"):
        Trainer(model, config=TrainConfig(steps=2, batch_size=64)).fit(data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    y[5] = -1
    with pytest.raises(ValueError, match=r"labels in \[-1, 9\]"):
        Trainer(_fresh(), config=TrainConfig(steps=2, batch_size=64)).fit(data)


def test_a_checkpoint_with_other_model_arguments_or_dataset_is_not_resumed(digits_splits, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=32)
    path = tmp_path / "m.pt"
    Trainer(_fresh(), config=cfg, checkpoint=path).fit(digits_splits["train"])
    avg = model_for_dataset("ross-cnn", "digits", hidden=32, pooling="avg")
    with pytest.raises(CheckpointError, match="built with other arguments"):
        Trainer(avg, config=cfg, checkpoint=path).saved_state()
    with pytest.raises(CheckpointError, match="trained on 'digits', not 'mnist'"):
        Trainer(_fresh(), config=cfg, checkpoint=path, meta={"dataset": "mnist"}).saved_state()
    assert Trainer(_fresh(), config=cfg, checkpoint=path, meta={"dataset": "DIGITS"}).saved_state()
