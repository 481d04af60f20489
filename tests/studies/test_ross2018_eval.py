"""The ross2018 evaluation helpers borrow the caller's model through the core model-state guard."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from underfire.studies.ross2018.evaluation import input_gradients


def _mixed_model() -> nn.Module:
    """A training model with a BatchNorm frozen in eval mode, a frozen conv and pending grads."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
    ).double()
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model.train()
    model[1].eval()
    model[0].weight.requires_grad_(False)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    return model


@pytest.mark.parametrize("uniform", [False, True])
def test_input_gradients_gives_the_model_back_exactly(uniform: bool) -> None:
    model = _mixed_model()
    modes = [(name, m.training) for name, m in model.named_modules()]
    flags = [(name, p.requires_grad) for name, p in model.named_parameters()]
    grads = [p.grad for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 5

    g = input_gradients(model, x, None if uniform else y, uniform=uniform)

    assert [(name, m.training) for name, m in model.named_modules()] == modes
    assert [(name, p.requires_grad) for name, p in model.named_parameters()] == flags
    assert all(p.grad is g0 for p, g0 in zip(model.parameters(), grads, strict=True))
    assert all(torch.equal(b, b0) for b, b0 in zip(model.buffers(), buffers, strict=True))
    # the gradient is the eval-mode model's (no dropout, BN on running statistics)
    ref = copy.deepcopy(model).eval()
    xx = x.clone().requires_grad_(True)
    logits = ref(xx)
    loss = (
        -F.log_softmax(logits, 1).mean(1).sum()
        if uniform
        else F.cross_entropy(logits, y, reduction="sum")
    )
    (expected,) = torch.autograd.grad(loss, xx)
    assert torch.equal(g, expected)


def test_input_gradients_restores_the_model_when_it_raises() -> None:
    model = _mixed_model()
    modes = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError):  # a wrong input size fails inside the forward pass
        input_gradients(model, torch.rand(2, 1, 5, 5, dtype=torch.float64), torch.zeros(2).long())
    assert [m.training for m in model.modules()] == modes
    assert model[1].training is False and model[0].weight.requires_grad is False
