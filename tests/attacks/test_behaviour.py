"""Behaviour on real data: attacks lower the accuracy of a trained ross-cnn (digits; MNIST
when ../shared/data is present), and the soundness warnings fire on their symptoms."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from underfire.attacks import (
    BIM,
    CW,
    FGSM,
    JSMA,
    PGD,
    TGSM,
    GradientMaskingWarning,
    SubstituteAttack,
)
from underfire.core.errors import NonFiniteError

N = 120


@pytest.fixture(scope="module")
def digits_model(trained_digits):
    return trained_digits[0]


@pytest.fixture(scope="module")
def test_xy(trained_digits):
    test = trained_digits[1]
    return test.x[:N], test.y[:N]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def hit_rate(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> float:
    return accuracy(model, x, t)


def test_untargeted_attacks_lower_accuracy(digits_model, test_xy):
    x, y = test_xy
    clean = accuracy(digits_model, x, y)
    assert clean > 0.9
    fgsm = accuracy(digits_model, FGSM(eps=0.3)(digits_model, x, y), y)
    pgd = accuracy(digits_model, PGD(eps=0.3, steps=10, seed=0)(digits_model, x, y), y)
    pgd_l2 = accuracy(
        digits_model, PGD(eps=2.0, steps=10, norm="l2", seed=0)(digits_model, x, y), y
    )
    assert fgsm < clean - 0.3
    assert pgd <= fgsm and pgd < 0.1
    assert pgd_l2 < clean - 0.5


def test_targeted_attacks_reach_next_class(digits_model, test_xy):
    x, y = test_xy
    t = (y + 1) % 10
    tgsm = hit_rate(digits_model, TGSM(eps=0.3)(digits_model, x, y), t)
    iterated = hit_rate(digits_model, BIM(eps=0.3, steps=10)(digits_model, x, y, target="next"), t)
    assert iterated > 0.8 and iterated >= tgsm


def test_pgd_restarts_and_early_stop(digits_model, test_xy):
    """Restarts fool strictly more samples than one run; early stop loses (almost) nothing.

    Fails if PGD ignores ``restarts`` (one run only: ``many == one``).
    """
    x, y = test_xy
    weak = {"eps": 0.1, "steps": 5}
    one = accuracy(digits_model, PGD(**weak, seed=0)(digits_model, x, y), y)
    many = accuracy(digits_model, PGD(**weak, restarts=4, seed=0)(digits_model, x, y), y)
    early = PGD(**weak, early_stop=True, seed=0)(digits_model, x, y)
    assert many <= one - 2 / N  # at least two more samples fooled
    assert accuracy(digits_model, early, y) <= one + 0.05


def _per_sample_loss(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor):
    with torch.no_grad():
        logits = model(x_adv)
    return nn.functional.cross_entropy(logits, y, reduction="none"), logits.argmax(1) != y


def test_pgd_restarts_are_strictly_stronger_than_every_single_seeded_run(
    digits_model, test_xy, monkeypatch
):
    """In a weak setting (2 steps of 0.02 in an ε = 0.2 ball, so the random start matters),
    PGD with restarts keeps, per sample, the strongest of its runs: fooled if any run fooled
    it, else the highest loss; and it fools strictly more samples than any single run with
    its own seed.

    Fails if PGD ignores ``restarts``, keeps the last run instead of the best one, or keeps
    the lowest-loss run.
    """
    x, y = test_xy
    weak = {"eps": 0.2, "steps": 2, "step_size": 0.02}
    restarts = 6
    runs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (inputs, result) of every run
    run = PGD._run

    def recorded(self, model, xr, labels, *args, **kwargs):
        adv = run(self, model, xr, labels, *args, **kwargs)
        runs.append((xr.clone(), adv.clone()))
        return adv

    monkeypatch.setattr(PGD, "_run", recorded)
    best = PGD(**weak, restarts=restarts, seed=0)(digits_model, x, y)
    assert len(runs) == restarts  # the setting is weak: some samples survive every run
    best_loss, best_fooled = _per_sample_loss(digits_model, best, y)
    index = {tuple(row.tolist()): i for i, row in enumerate(x.flatten(1))}
    assert len(index) == N  # distinct images: a run's rows map back to their samples
    for xr, adv in runs:
        rows = torch.tensor([index[tuple(r.tolist())] for r in xr.flatten(1)])
        loss, fooled = _per_sample_loss(digits_model, adv, y[rows])
        assert best_fooled[rows][fooled].all()
        unfooled = ~best_fooled[rows]
        assert (best_loss[rows][unfooled] >= loss[unfooled] - 1e-5).all()
    runs.clear()
    singles = [PGD(**weak, seed=seed)(digits_model, x, y) for seed in range(restarts)]
    first_loss, first_fooled = _per_sample_loss(digits_model, singles[0], y)
    assert (best_fooled >= first_fooled).all()  # the first restart is the seed-0 run
    survived = ~best_fooled
    assert (best_loss[survived] >= first_loss[survived] - 1e-5).all()
    strongest_single = max(int(_per_sample_loss(digits_model, s, y)[1].sum()) for s in singles)
    assert int(best_fooled.sum()) >= strongest_single + 3


def test_jsma_reaches_target_with_few_pixels(digits_model, test_xy):
    x, y = test_xy[0][:40], test_xy[1][:40]
    attack = JSMA(theta=1.0, gamma=0.5)
    x_adv = attack(digits_model, x, y)
    assert hit_rate(digits_model, x_adv, (y + 1) % 10) > 0.8
    changed = ((x_adv - x) != 0).flatten(1).sum(1).float()
    assert changed.max() <= 2 * attack.max_iterations(64)


def test_cw_finds_small_l2_examples(digits_model, test_xy):
    """C&W fools every sample at a mean L2 distance of 0.67 on this model.

    Fails if the binary search over c is dropped (one c: half the samples survive) or
    only raises c without bisecting back down (mean distance 0.80).
    """
    x, y = test_xy[0][:40], test_xy[1][:40]
    x_adv = CW(steps=100, binary_search_steps=4, const=0.1, lr=0.05)(digits_model, x, y)
    assert accuracy(digits_model, x_adv, y) < 0.1
    l2_cw = (x_adv - x).flatten(1).norm(dim=1).mean()
    assert l2_cw < 0.75


def test_substitute_black_box(digits_model, test_xy):
    x, y = test_xy
    attack = SubstituteAttack(attack=FGSM(eps=0.3), n_seed=100, rounds=4, epochs=10, seed=0)
    x_adv = attack(digits_model, x, y)
    assert attack.queries == 100 * 2**3
    assert attack.agreement > 0.7
    assert accuracy(digits_model, x_adv, y) < accuracy(digits_model, x, y) - 0.2


class Tempered(nn.Module):
    """A distilled-like model evaluated at T = 1: huge logits saturate the softmax, so
    ∂CE/∂x underflows to exactly zero for confidently classified inputs."""

    def __init__(self, model: nn.Module, scale: float = 1e4) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.scale


def test_masked_gradients_warn_and_tgsm_still_works(digits_model, test_xy):
    x, y = test_xy
    model = Tempered(digits_model).eval()
    with pytest.warns(GradientMaskingWarning, match="all zero"):
        x_fgsm = FGSM(eps=0.3)(model, x, y)
    unchanged = (x_fgsm == x).flatten(1).all(1).float().mean()
    assert unchanged > 0.5  # FGSM returns the clean input: masking, not robustness
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientMaskingWarning)
        x_tgsm = TGSM(eps=0.3)(model, x, y)  # the target's CE is far from saturation
    assert accuracy(model, x_tgsm, y) < accuracy(model, x_fgsm, y) - 0.3


def test_nan_logits_are_refused(test_xy):
    class NaNModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.w * float("nan")

    x, y = test_xy
    with pytest.raises(ValueError, match="NaN or infinite"):
        PGD(eps=0.1, steps=1)(NaNModel(), x, y)


def test_nan_gradients_warn_then_raise(test_xy):
    class NaNGradModel(nn.Module):
        """Finite logits, NaN input gradients: 0·sqrt(x − x) has derivative 0·∞."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(64, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.w + 0 * (x - x).flatten(1).sqrt().sum(1, keepdim=True)

    x, y = test_xy
    with pytest.warns(GradientMaskingWarning, match="NaN"):  # L∞: sign(NaN) = 0, x stays
        x_adv = PGD(eps=0.1, steps=1, random_start=False)(NaNGradModel(), x, y)
    assert torch.equal(x_adv, x)
    with (  # L2: the step itself is NaN, and a NaN example is never returned
        pytest.warns(GradientMaskingWarning, match="NaN"),
        pytest.raises(NonFiniteError, match="NaN or infinite values"),
    ):
        PGD(eps=0.5, steps=1, norm="l2")(NaNGradModel(), x, y)


@pytest.mark.shared_data
def test_attacks_on_mnist(shared_data):
    from underfire.data import load_dataset
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig, Trainer

    train = load_dataset("mnist", split="train", root=shared_data).subset(3000)
    test = load_dataset("mnist", split="test", root=shared_data).subset(200)
    torch.manual_seed(0)
    model = model_for_dataset("ross-cnn", "mnist", hidden=128)
    Trainer(model, config=TrainConfig(epochs=1, batch_size=64, lr=2e-3, seed=0)).fit(train)
    model.eval()
    clean = accuracy(model, test.x, test.y)
    assert clean > 0.85
    assert accuracy(model, FGSM(eps=0.25)(model, test.x, test.y), test.y) < clean - 0.3
    assert accuracy(model, PGD(eps=0.25, steps=7, seed=0)(model, test.x, test.y), test.y) < 0.2


def test_check_gradient_symptoms():
    from underfire.attacks import check_gradient

    grads = torch.ones(4, 1, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_gradient(grads, "X")  # healthy: silent
    grads[1] = 1e-35
    grads[2] = 0.0
    grads[3, 0, 0, 0] = float("nan")
    with pytest.warns(GradientMaskingWarning) as seen:
        check_gradient(grads, "X")
    messages = " | ".join(str(w.message) for w in seen)
    assert "1 of 4 input gradients underflow" in messages
    assert "1 of 4 input gradients are all zero" in messages
    assert "1 of 4 input gradients contain NaN" in messages
