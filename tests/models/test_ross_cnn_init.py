"""The Ross CNN's initialization: TF-slim's Glorot-uniform weights and zero biases (the
authors' layers) by default, PyTorch's with ``init="torch"``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from underfire.models import create_model, model_for_dataset


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_paper_init_is_glorot_uniform_with_zero_biases_and_the_default() -> None:
    torch.manual_seed(0)
    model = create_model("ross-cnn")
    assert model.init == "paper"
    layers = _layers(model)
    assert len(layers) == 4
    for layer in layers:
        w = layer.weight.detach()
        receptive = w[0, 0].numel() if w.dim() > 2 else 1
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert float(w.abs().max()) <= bound
        # uniform on [−bound, bound]: std = bound/√3 (within 5% for ≥ 800 weights)
        assert float(w.std()) == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0


def test_torch_init_keeps_pytorchs_default() -> None:
    torch.manual_seed(0)
    paper = create_model("ross-cnn")
    torch.manual_seed(0)
    default = create_model("ross-cnn", init="torch")
    assert default.init == "torch"
    # PyTorch's default for the logit layer: weights within ±1/√fan_in, nonzero biases
    logit_torch = _layers(default)[-1]
    assert float(logit_torch.weight.abs().max()) <= 1 / math.sqrt(1024)
    assert torch.count_nonzero(logit_torch.bias) > 0
    # Glorot's std √(2/(1024+10)) vs PyTorch's 1/√(3·1024): the paper's is about 2.4× larger
    ratio = float(_layers(paper)[-1].weight.detach().std() / logit_torch.weight.detach().std())
    assert 2.2 < ratio < 2.6, ratio


def test_init_is_validated_and_recorded() -> None:
    with pytest.raises(ValueError, match="init must be 'paper'"):
        create_model("ross-cnn", init="xavier")
    model = model_for_dataset("ross-cnn", "digits", init="paper")
    assert model.init == "paper" and model.config["kwargs"]["init"] == "paper"
