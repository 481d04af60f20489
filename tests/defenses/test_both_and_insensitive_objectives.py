"""The authors' "both" objective and the certainty-insensitive model, against hand computations.

Ross & Doshi-Velez's code trains "both" on ½·[CE(x) + λ·penalty(x)] + ½·CE(x_adv): the gradient
penalty on the clean inputs only, FGSM (labels: the model's own argmax) crafted on the clean
half's training-mode forward pass. Their certainty-insensitive model penalizes the input
gradient of the cross-entropy against the uniform labels, at λ = 1,000 on MNIST.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from underfire import defenses
from underfire.attacks import FGSM
from underfire.defenses import AdversarialTraining, GradientRegularization
from underfire.studies.ross2018 import resolve_config
from underfire.studies.ross2018.training import objective_for
from underfire.train import CrossEntropy


def _two_class_linear() -> nn.Module:
    """logits = W·x with W = diag(2, 1), no bias: every number below is written out by hand."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    return model


def _hand_both(lam: float, eps: float) -> float:
    # x = (0.5, 0.25), true label 1: logits (1, 0.25), so the model predicts 0.
    s = 1 / (1 + math.exp(-0.75))  # p_0 = σ(1 − 0.25)
    ce = math.log(1 + math.exp(0.75))  # −log p_1
    penalty = 5 * s**2  # ‖Wᵀ(p − e_1)‖² = ‖(2s, −s)‖²
    # FGSM against the predicted label 0: ∇ₓCE(x, 0) = Wᵀ(p − e_0) = (−2(1−s), 1−s), sign (−, +)
    x_adv = (max(0.5 - eps, 0.0), min(0.25 + eps, 1.0))
    z0, z1 = 2 * x_adv[0], x_adv[1]
    ce_adv = math.log(1 + math.exp(z0 - z1))  # −log p_1 at x_adv
    return 0.5 * (ce + lam * penalty) + 0.5 * ce_adv


@pytest.mark.parametrize("eps", [0.3, 0.6])  # 0.6 clips the first pixel at 0
def test_both_penalizes_clean_inputs_only_and_crafts_on_predicted_labels(eps: float) -> None:
    model = _two_class_linear().train()
    x = torch.tensor([[[[0.5, 0.25]]]], dtype=torch.float64)
    y = torch.tensor([1])
    lam = 0.8
    both = defenses.create("both", lam=lam, adv_eps=eps)
    assert both.craft == "train" and isinstance(both.adv_inner, CrossEntropy)
    loss = both(model, x, y)
    torch.testing.assert_close(loss.item(), _hand_both(lam, eps), rtol=1e-12, atol=1e-12)
    # the former reading (penalty on both halves) is another number: the test tells them apart
    old = AdversarialTraining(FGSM(eps=eps), inner=GradientRegularization(lam))
    assert abs(old(model, x, y).item() - _hand_both(lam, eps)) > 1e-3
    loss.backward()  # no gradient through the crafting: the loss trains like any other
    assert model[1].weight.grad is not None and torch.isfinite(model[1].weight.grad).all()


def test_craft_on_the_training_forward_equals_eval_crafting_without_dropout_or_batch_norm() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x, y = torch.rand(5, 1, 2, 3, dtype=torch.float64), torch.tensor([0, 2, 1, 1, 0])
    inner = GradientRegularization(2.0)
    train = AdversarialTraining(FGSM(eps=0.2), inner=inner, adv_inner=CrossEntropy(), craft="train")
    evalmode = AdversarialTraining(FGSM(eps=0.2), inner=inner, adv_inner=CrossEntropy())
    torch.testing.assert_close(train(model.train(), x, y), evalmode(model.train(), x, y))


def test_training_forward_crafting_adds_no_batch_norm_update() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)
    )
    x, y = torch.rand(8, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    both = AdversarialTraining(
        FGSM(eps=0.3), inner=GradientRegularization(1.0), adv_inner=CrossEntropy(), craft="train"
    )
    both(model.train(), x, y).backward()
    assert int(model[2].num_batches_tracked) == 2  # the clean and the adversarial forward only


def test_training_forward_crafting_is_validated() -> None:
    with pytest.raises(ValueError, match="craft='train' crafts FGSM"):
        AdversarialTraining(lambda m, x, y: x, craft="train")
    with pytest.raises(ValueError, match="needs inner"):
        AdversarialTraining(FGSM(eps=0.3), inner=lambda m, x, y: x.sum(), craft="train")
    with pytest.raises(ValueError, match="craft must be"):
        AdversarialTraining(craft="test")  # type: ignore[arg-type]


def test_certainty_insensitive_uses_the_authors_lambda_per_data_set() -> None:
    # their models: MNIST 1,000, notMNIST 177.8, SVHN 1,000 (batch 256), not gradreg's λ
    for dataset, paper in (("mnist", 1_000.0), ("notmnist", 177.8), ("svhn", 1_000.0)):
        cfg = resolve_config(dataset, "paper-cpu")
        assert cfg.insensitive_lambda == paper
        objective = objective_for("certainty-insensitive", cfg)
        assert objective.certainty_insensitive and objective.lam == pytest.approx(paper / 512)
    assert defenses.create("certainty-insensitive").lam == pytest.approx(1_000 / 512)
    assert objective_for("gradreg", resolve_config("mnist")).lam == pytest.approx(56_234 / 512)


def test_certainty_insensitive_objective_value_by_hand() -> None:
    # x = (0.5, 0.25), logits (1, 0.25): p = (s, 1 − s); the uniform labels' gradient is
    # Wᵀ(p − ½) = (2(s − ½), ½ − s), squared norm 5(s − ½)²; the CE term uses the true label.
    model = _two_class_linear()
    x, y = torch.tensor([[[[0.5, 0.25]]]], dtype=torch.float64), torch.tensor([1])
    objective = objective_for("certainty-insensitive", resolve_config("mnist", "paper-cpu"))
    s = 1 / (1 + math.exp(-0.75))
    expected = math.log(1 + math.exp(0.75)) + (1_000 / 512) * 5 * (s - 0.5) ** 2
    torch.testing.assert_close(objective(model, x, y).item(), expected, rtol=1e-12, atol=1e-12)


def test_the_reproductions_both_is_the_authors() -> None:
    model = _two_class_linear().train()
    x, y = torch.tensor([[[[0.5, 0.25]]]], dtype=torch.float64), torch.tensor([1])
    cfg = resolve_config("mnist", "paper-cpu", paper_lambda=512.0)  # lam = 1 per example
    loss = objective_for("both", cfg)(model, x, y)
    torch.testing.assert_close(loss.item(), _hand_both(1.0, 0.3), rtol=1e-12, atol=1e-12)
