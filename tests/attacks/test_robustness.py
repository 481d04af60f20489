"""robust_accuracy and transfer_matrix: shared work, results, soundness warnings."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from underfire.attacks import CW, FGSM, PGD, Attack, SoundnessWarning
from underfire.robustness import robust_accuracy, transfer_matrix


class Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.num_classes = getattr(model, "num_classes", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.model(x)


@pytest.fixture(scope="module")
def setup(trained_digits):
    model, test = trained_digits
    return model, (test.x[:100], test.y[:100])


@pytest.mark.parametrize("exhaustive", [True, False])
def test_fgsm_sweep_computes_one_gradient_per_batch(setup, exhaustive):
    model, data = setup
    counted = Counting(model).eval()
    eps = [0.0, 0.1, 0.2, 0.3]
    result = robust_accuracy(
        counted, FGSM(), data, eps=eps, batch_size=50, exhaustive=exhaustive, check=False
    )
    # the evaluation's own work (check=False: no soundness probe); once: the thread policy's size probe; per batch: 1 clean prediction + 1 gradient + 1
    # prediction per ε (the open mode predicts nothing at ε = 0: the clean prediction stands)
    assert counted.forwards == 1 + 2 * (2 + len(eps) - (0 if exhaustive else 1))
    worst = 1.0
    for e, acc in zip(eps, result["accuracy"], strict=False):
        x_adv = FGSM(eps=e)(model, *data)
        with torch.no_grad():
            alone = float((model(x_adv).argmax(1) == data[1]).float().mean())
        worst = min(worst, alone)
        if exhaustive:
            assert acc == pytest.approx(alone)
        else:  # broken at a smaller ε counts as broken: at most the worst so far
            assert acc <= worst + 1e-6
    assert result["accuracy"][0] == pytest.approx(result["clean_accuracy"])
    assert result["n"] == 100 and result["eps"] == eps
    assert all(
        a + s == pytest.approx(1.0)
        for a, s in zip(result["accuracy"], result["success_rate"], strict=False)
    )


def test_dataset_and_tuple_agree_and_examples_kept(trained_digits):
    model, test = trained_digits
    sub = test.subset(60)
    a = robust_accuracy(
        model, PGD(eps=0.1, steps=3, random_start=False), sub, eps=[0.05, 0.1], keep_examples=5
    )
    b = robust_accuracy(
        model, PGD(eps=0.1, steps=3, random_start=False), (sub.x, sub.y), eps=[0.05, 0.1]
    )
    assert a["accuracy"] == b["accuracy"]
    assert a["examples"]["x_adv"].shape == (2, 5, 1, 8, 8)
    assert (a["examples"]["x_adv"][1] - a["examples"]["x"]).abs().max() <= 0.1 + 1e-6


def test_targeted_success_rate(setup):
    model, data = setup
    result = robust_accuracy(
        model, PGD(eps=0.3, steps=10, random_start=False), data, eps=[0.3], target="next"
    )
    x_adv = PGD(eps=0.3, steps=10, random_start=False)(model, *data, target="next")
    with torch.no_grad():
        hit = float((model(x_adv).argmax(1) == (data[1] + 1) % 10).float().mean())
    assert result["success_rate"][0] == pytest.approx(hit)


def test_attack_without_eps(setup):
    model, data = setup
    x, y = data[0][:10], data[1][:10]
    result = robust_accuracy(model, CW(steps=10, binary_search_steps=1, const=1.0), (x, y))
    assert result["eps"] == [None] and 0 <= result["accuracy"][0] <= 1
    with pytest.raises(ValueError, match="has no ε"):
        robust_accuracy(model, CW(), (x, y), eps=[0.1])


class Inverted(Attack):
    """A broken attack: strong at small ε, no-op at large ε."""

    name = "inverted"
    norm = "linf"

    def __init__(self, *, eps: float = 0.3) -> None:
        self.eps = eps

    def _perturb(self, model, x, y, target):
        return FGSM(eps=self.eps)(model, x, y) if self.eps < 0.2 else x.clone()


def test_accuracy_rising_with_eps_warns(setup):
    model, data = setup
    with pytest.warns(SoundnessWarning, match="accuracy rises with ε"):
        robust_accuracy(model, Inverted(), data, eps=[0.1, 0.3])


def test_iterative_weaker_than_single_step_warns(setup):
    model, data = setup
    crippled = PGD(eps=0.3, step_size=1e-4, steps=2, random_start=False)
    with pytest.warns(SoundnessWarning, match="more than single-step FGSM"):
        robust_accuracy(model, crippled, data, eps=[0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SoundnessWarning)
        robust_accuracy(model, PGD(eps=0.3, steps=5, random_start=False), data, eps=[0.1, 0.3])


@pytest.fixture(scope="module")
def linear_digits(trained_digits):
    """A second, distinct classifier: logistic regression on the 64 pixels (another
    architecture, other weights), trained on digits in about a second."""
    from underfire.data import load_dataset
    from underfire.train import TrainConfig, Trainer

    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    Trainer(model, config=TrainConfig(epochs=8, batch_size=64, lr=1e-2, seed=3)).fit(
        load_dataset("digits", "train")
    )
    return model.eval()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_transfer_matrix(setup, linear_digits):
    """Names, shapes and clean accuracies, and white-box cells stronger than transferred ones.

    Fails if the examples are crafted on the victim instead of the source: the CNN→linear
    cell then equals the linear model's white-box accuracy, far below the transferred one.
    """
    cnn, data = setup
    eps = [0.1, 0.3]
    result = transfer_matrix(
        {"cnn": cnn, "linear": linear_digits}, [linear_digits, cnn], FGSM(), data, eps=eps
    )
    assert result["sources"] == ["cnn", "linear"] and result["victims"] == ["victim0", "victim1"]
    acc = torch.tensor(result["accuracy"])
    assert acc.shape == (2, 2, 2) and result["eps"] == eps and result["n"] == 100
    assert result["clean_accuracy"] == {
        "victim0": pytest.approx(_accuracy(linear_digits, *data)),
        "victim1": pytest.approx(_accuracy(cnn, *data)),
    }
    white = {
        "cnn": robust_accuracy(cnn, FGSM(), data, eps=eps)["accuracy"],
        "linear": robust_accuracy(linear_digits, FGSM(), data, eps=eps)["accuracy"],
    }
    torch.testing.assert_close(acc[0, 1], torch.tensor(white["cnn"], dtype=acc.dtype))
    torch.testing.assert_close(acc[1, 0], torch.tensor(white["linear"], dtype=acc.dtype))
    # at the small ε, transfer loses strength: each victim does better on the other model's
    # examples than on its own (at ε = 0.3 both fool either model)
    assert acc[0, 0, 0] > acc[1, 0, 0] + 0.05 and acc[1, 1, 0] > acc[0, 1, 0] + 0.05


def test_transfer_matrix_cells_equal_fgsm_crafted_on_the_source_scored_on_the_victim(
    setup, linear_digits
):
    """Every cell [source][victim][ε] is the victim's accuracy on FGSM examples crafted
    white-box against the source, with two models of different architectures and weights.

    Fails if transfer_matrix crafts on the victim instead of the source, mixes up the order
    of sources, victims or ε, or scores a cell on the source instead of the victim.
    """
    cnn, data = setup
    models = {"cnn": cnn, "linear": linear_digits}
    eps = [0.05, 0.15, 0.3]
    result = transfer_matrix(models, models, FGSM(), data, eps=eps, batch_size=40)
    cells = {}
    for s, source in enumerate(models.values()):
        for v, victim in enumerate(models.values()):
            for e, radius in enumerate(eps):
                expected = _accuracy(victim, FGSM(eps=radius)(source, *data), data[1])
                cells[s, v, e] = expected
                assert result["accuracy"][s][v][e] == pytest.approx(expected), (s, v, e)
    # the two models disagree enough that a swapped source or victim changes the cells
    assert any(abs(cells[0, 1, e] - cells[1, 1, e]) > 0.1 for e in range(len(eps)))
    assert any(abs(cells[1, 0, e] - cells[0, 0, e]) > 0.1 for e in range(len(eps)))


def test_bad_data_is_rejected(setup):
    model, _ = setup
    with pytest.raises(TypeError, match=r"must be an \(x, y\) pair"):
        robust_accuracy(model, FGSM(), [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        robust_accuracy(model, FGSM(), (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)))


def test_random_targets_count_misclassification(setup):
    model, data = setup
    r = robust_accuracy(model, FGSM(), data, eps=[0.3], target="random")
    assert r["success_rate"][0] == pytest.approx(1 - r["accuracy"][0]) and r["success_rate"][0] > 0
