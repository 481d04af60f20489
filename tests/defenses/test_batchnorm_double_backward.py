"""The closed-form batch-norm second derivative: gradgradcheck in float64, equality with
PyTorch's generic double backward, and the module swap (values, running statistics, restore)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck, gradgradcheck

from underfire.core.autograd.batchnorm import batch_norm_train, fast_batch_norm_double_backward
from underfire.defenses import GradientRegularization
from underfire.models import create_model

SHAPES = [(4, 3, 5, 5), (6, 3), (3, 2, 7)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inputs(
    shape: tuple[int, ...], affine: bool, seed: int = 0, device: str = "cpu"
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
    if not affine:
        return (x,)
    w = torch.randn(shape[1], generator=g, dtype=torch.float64).to(device).requires_grad_()
    b = torch.randn(shape[1], generator=g, dtype=torch.float64).to(device).requires_grad_()
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_first_and_second_derivatives_pass_gradcheck_in_float64(
    shape: tuple[int, ...], affine: bool
) -> None:
    inputs = _inputs(shape, affine)

    def f(x: torch.Tensor, *wb: torch.Tensor) -> torch.Tensor:
        w, b = wb if wb else (None, None)
        return batch_norm_train(x, w, b, eps=1e-5)

    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES)
def test_second_derivatives_equal_pytorchs_generic_double_backward(
    shape: tuple[int, ...], device: str
) -> None:
    x, w, b = _inputs(shape, affine=True, device=device)
    g = torch.Generator().manual_seed(1)
    upstream = torch.randn(*shape, generator=g, dtype=torch.float64).to(device).requires_grad_()
    weight_of_dx = torch.randn(*shape, generator=g, dtype=torch.float64).to(device)
    results = []
    for bn in (
        lambda: batch_norm_train(x, w, b, eps=1e-5),
        lambda: F.batch_norm(x, None, None, w, b, True, 0.1, 1e-5),
    ):
        y = bn()
        # a first derivative that depends on the output, then a scalar of all three gradients,
        # so every branch of the closed form (∂/∂dx, ∂/∂dγ, ∂/∂dβ) is exercised
        dx, dw, db = torch.autograd.grad(
            (y * upstream * y.detach()).sum(), (x, w, b), create_graph=True
        )
        s = (dx * weight_of_dx).sum() + (dw**2).sum() + 3 * db.sum() * dw.sum()
        results.append(torch.autograd.grad(s, (x, w, upstream)))
    for ours, theirs in zip(*results, strict=False):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_third_derivative_is_refused() -> None:
    x, w, b = _inputs((4, 3), affine=True)
    (dx,) = torch.autograd.grad(batch_norm_train(x, w, b).pow(3).sum(), x, create_graph=True)
    (ddx,) = torch.autograd.grad(dx.pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives"):
        torch.autograd.grad(ddx.sum(), x)


def test_rejects_inputs_without_a_channel_dimension() -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        batch_norm_train(torch.randn(5), None, None)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_swapped_layers_match_native_values_and_running_statistics(momentum: float | None) -> None:
    torch.manual_seed(0)
    native = nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.BatchNorm2d(4, momentum=momentum),
        nn.Flatten(),
        nn.BatchNorm1d(4 * 4 * 4),
    )
    ours = copy.deepcopy(native)
    for _step in range(3):
        x = torch.randn(5, 2, 6, 6)
        expected = native(x)
        with fast_batch_norm_double_backward(ours):
            got = ours(x)
        torch.testing.assert_close(got, expected)
    for a, b in zip(native.buffers(), ours.buffers(), strict=False):
        torch.testing.assert_close(a, b)
    assert int(ours[1].num_batches_tracked) == 3


def test_evaluation_mode_layers_and_restoration() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    x = torch.randn(6, 3)
    expected = model(x)
    with fast_batch_norm_double_backward(model):
        torch.testing.assert_close(model(x), expected)  # running statistics, untouched
        assert int(model[1].num_batches_tracked) == 0
    assert "forward" not in model[1].__dict__
    with pytest.raises(KeyError), fast_batch_norm_double_backward(model.train()):
        raise KeyError("boom")
    assert "forward" not in model[1].__dict__  # restored after an exception too


def test_gradient_regularization_step_equals_the_generic_double_backward() -> None:
    torch.manual_seed(0)
    model = create_model("ross-cnn", input_size=8).double().train()
    model_generic = copy.deepcopy(model)
    x = torch.rand(16, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (16,))
    losses = []
    for m, fast in ((model, True), (model_generic, False)):
        torch.manual_seed(1)  # same dropout mask
        loss = GradientRegularization(50.0, fast_batch_norm=fast)(m, x, y)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=0)
    scale = max(p.grad.abs().max() for p in model_generic.parameters())
    for (name, p), q in zip(model.named_parameters(), model_generic.parameters(), strict=False):
        # convolution biases before batch norm have a zero gradient in exact arithmetic;
        # compare every gradient on the scale of the largest one
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-9 * float(scale), msg=name)
