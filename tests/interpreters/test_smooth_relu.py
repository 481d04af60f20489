"""The smooth-backward ReLU of ADV² (REFERENCE.md §3) and its context manager."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from underfire.core.autograd.smooth_relu import smooth_relu_function
from underfire.interpreters import Saliency, SmoothReLU, smooth_relu, smooth_relu_derivative

TAU = 1e-4


def test_derivative_is_exactly_the_reference_formula():
    z = torch.tensor([-1.0, -0.05, -0.01, -1e-3, 0.0, 1e-3, 0.01, 0.05, 1.0], dtype=torch.float64)
    expected = [
        1 + v / (v * v + TAU) ** 0.5 if v < 0 else v / (v * v + TAU) ** 0.5 for v in z.tolist()
    ]
    torch.testing.assert_close(
        smooth_relu_derivative(z, TAU),
        torch.tensor(expected, dtype=torch.float64),
        rtol=1e-12,
        atol=0,
    )
    # Documented shape: h(0) = 0, h(0⁻) → 1, h → step away from 0, 0.5 at ±√(τ/3).
    assert smooth_relu_derivative(torch.tensor(0.0)) == 0
    assert smooth_relu_derivative(torch.tensor(-1e-9)) > 0.99
    half = (TAU / 3) ** 0.5
    torch.testing.assert_close(
        smooth_relu_derivative(torch.tensor([half, -half], dtype=torch.float64)),
        torch.tensor([0.5, 0.5], dtype=torch.float64),
    )


def test_forward_is_exact_relu_and_backward_is_h():
    z = torch.randn(200, dtype=torch.float64, requires_grad=True)
    out = smooth_relu_function(z, TAU)
    assert torch.equal(out, torch.relu(z.detach()))
    g = torch.randn(200, dtype=torch.float64)
    (grad,) = torch.autograd.grad(out, z, g)
    torch.testing.assert_close(grad, g * smooth_relu_derivative(z.detach(), TAU))


def test_backward_is_differentiable_gradcheck():
    # The backward map (g, z) ↦ g·h(z) must itself be differentiated correctly (create_graph).
    z = (torch.randn(12, dtype=torch.float64) * 0.02).requires_grad_(True)
    g = torch.randn(12, dtype=torch.float64, requires_grad=True)

    def backward_of(g_, z_):
        out = smooth_relu_function(z_, TAU)
        return torch.autograd.grad(out, z_, g_, create_graph=True)[0]

    assert torch.autograd.gradcheck(backward_of, (g, z))


def _relu_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 8),
        nn.ReLU(),
        nn.Linear(8, 3),
    ).eval()


def test_context_swaps_and_restores():
    model = _relu_net()
    originals = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    with smooth_relu(model) as same:
        assert same is model
        assert all(isinstance(model[i], SmoothReLU) for i in (1, 4))
    assert [model[1], model[4]] == originals
    with pytest.raises(RuntimeError), smooth_relu(model):
        raise RuntimeError("boom")
    assert [model[1], model[4]] == originals


def test_shared_module_is_swapped_everywhere():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu)
    with smooth_relu(model):
        assert isinstance(model[1], SmoothReLU) and model[1] is model[3]
    assert model[1] is relu and model[3] is relu


def test_warns_without_relu_modules():
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
    with pytest.warns(UserWarning, match="no nn.ReLU"), smooth_relu(model):
        pass


def test_predictions_unchanged(digits_small, digits_splits):
    x = digits_splits["test"].x[:32]
    with torch.no_grad():
        before = digits_small(x)
        with smooth_relu(digits_small):
            during = digits_small(x)
    assert torch.equal(before, during)


def test_second_order_through_relu_network_is_nonzero_only_when_smoothed(
    digits_small, digits_splits
):
    # ross-cnn is piecewise linear (conv, BN in eval, ReLU, max-pool, linear): the GRAD map is
    # piecewise constant in x, so its input gradient vanishes unless the ReLUs are smoothed.
    x = digits_splits["test"].x[:4].clone().requires_grad_(True)
    y = digits_splits["test"].y[:4]
    weight = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def grad_of_map():
        m = Saliency()(digits_small, x, y, create_graph=True)
        return torch.autograd.grad((m * weight).sum(), x, allow_unused=True)[0]

    plain = grad_of_map()
    assert plain is None or plain.abs().max() == 0
    with smooth_relu(digits_small):
        smooth = grad_of_map()
    assert smooth is not None and smooth.abs().max() > 0
    assert all(
        isinstance(m, nn.ReLU) and not isinstance(m, SmoothReLU)
        for m in digits_small.modules()
        if isinstance(m, nn.ReLU)
    )


def test_functional_relu_is_documented_not_swapped():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.relu(self.fc(x))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with smooth_relu(Functional()):
            pass
    assert any("functional" in str(w.message) for w in caught)


def test_bad_tau():
    with pytest.raises(ValueError):
        SmoothReLU(0)
