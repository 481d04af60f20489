"""The core layer's own contracts: the model-state guard, norm objects, hyperparameter checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from underfire.core import L2, LINF, get_norm, model_state
from underfire.core.autograd import capture_layers, replace_output
from underfire.core.validation import check_eps, check_float, check_logits, check_same_device


def _mixed_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    model[1].eval()  # a user froze batch norm inside a training model
    model[0].weight.requires_grad_(False)
    model[3].weight.grad = torch.ones_like(model[3].weight)
    return model


def test_model_state_restores_every_submodule_flag_and_grad() -> None:
    model = _mixed_model()
    before = [m.training for m in model.modules()]
    grad = model[3].weight.grad
    with model_state(model):
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        model(torch.randn(3, 4)).sum()
        model[3].weight.grad = None
    assert [m.training for m in model.modules()] == before
    assert model[3].weight.grad is grad
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]


def test_model_state_restores_after_an_exception() -> None:
    model = _mixed_model()
    before = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError), model_state(model, mode="train"):
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == before
    assert not model[0].weight.requires_grad


def test_model_state_refuses_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"), model_state(nn.Linear(2, 2), mode="test"):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize("norm", [LINF, L2])
def test_norm_projection_random_start_and_direction(norm) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 6, 6, generator=gen)
    delta = torch.randn(5, 1, 6, 6, generator=gen)
    eps = 0.3
    projected = norm.project(delta, eps)
    assert (norm.distance(projected, torch.zeros_like(projected)) <= eps + 1e-6).all()
    inside = norm.project(projected * 0.5, eps)
    assert torch.allclose(inside, projected * 0.5)
    start = norm.random_start(x, eps, gen)
    assert (norm.distance(start, x) <= eps + 1e-6).all() and start.min() >= 0 and start.max() <= 1
    d = norm.direction(delta)
    unit = d.flatten(1).abs().amax(1) if norm is LINF else d.flatten(1).norm(dim=1)
    assert torch.allclose(unit, torch.ones(5))
    # the direction is the steepest ascent: it maximizes <g, d> over the unit ball
    dual = delta.flatten(1).abs().sum(1) if norm is LINF else delta.flatten(1).norm(dim=1)
    assert torch.allclose((delta * d).flatten(1).sum(1), dual, rtol=1e-5)


def test_get_norm_names() -> None:
    assert get_norm("LINF") is LINF and get_norm(L2) is L2
    with pytest.raises(ValueError, match="norm must be one of"):
        get_norm("l1")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "0.1", None, True])
def test_check_float_refuses_non_finite_and_non_numbers(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        check_float(bad, "eps")


def test_check_eps_range() -> None:
    assert check_eps(0.0) == 0.0 and check_eps(8 / 255) == pytest.approx(0.0314, abs=1e-4)
    with pytest.raises(ValueError, match="exceeds 1"):
        check_eps(8)
    assert check_eps(3.0, "l2") == 3.0
    with pytest.raises(ValueError, match="≥ 0"):
        check_eps(-0.1)


def test_check_logits_shapes_and_probability_warning() -> None:
    with pytest.raises(ValueError, match="shape"):
        check_logits(torch.zeros(3, 2, 2), 3)
    with pytest.raises(ValueError, match="NaN"):
        check_logits(torch.tensor([[math.nan, 0.0]]), 1)
    with pytest.warns(UserWarning, match="probabilities"):
        check_logits(torch.softmax(torch.randn(4, 3), 1), 4)


def test_dtype_mismatch_is_one_clear_error() -> None:
    with pytest.raises(TypeError, match="float64"):
        check_same_device(nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.float64))


def test_capture_and_replace_remove_their_hooks_even_on_error() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    x = torch.randn(4, 2)
    with capture_layers({"fc": model[0], "relu": model[1]}) as out:
        model(x)
    assert out["fc"][0].shape == (4, 3) and len(out["relu"]) == 1
    with pytest.raises(ValueError, match="shape"), replace_output(model[0], lambda a: a[:1]):
        model(x)
    with replace_output(model[1], torch.zeros_like):
        assert torch.allclose(model(x), model[2].bias.expand(4, 1))
    assert not model[0]._forward_hooks and not model[1]._forward_hooks


def _hostile_points(gen: torch.Generator, grid: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x in [0, 1] and iterates z around it: inside the ball, outside it, outside [0, 1]
    (up to 0.75 beyond either end), at the box's edges; on a dyadic grid when ``grid``."""
    x = torch.rand(64, 3, 5, 5, generator=gen, dtype=torch.float64)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = 0.0, 1.0
    z = x + 2.5 * torch.rand(x.shape, generator=gen, dtype=torch.float64) - 1.25
    if grid is not None:
        x, z = (x * 2**grid).round() / 2**grid, (z * 2**grid).round() / 2**grid
    return x, z


@pytest.mark.parametrize("eps", [0.0, 2**-8, 0.125, 0.3, 1.0])
def test_linf_ball_projection_is_linf_project(eps: float) -> None:
    """PGD, BIM and ADV² project their L∞ iterates with LINF.ball(x, ε).project_ (two clamps
    against precomputed bounds); it is x + LINF.project(z − x, ε) clipped to [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    # on a dyadic grid every operation of both forms is exact: the same tensors
    x, z = _hostile_points(gen, grid=12)
    ball = LINF.ball(x, eps)
    reference = (x + LINF.project(z - x, eps)).clamp(0.0, 1.0)
    assert torch.equal(ball.project_(z.clone()), reference)
    active = torch.tensor([3, 0, 17, 63])
    assert torch.equal(ball.project_(z[active].clone(), active), reference[active])
    # any float64 input: equal but for the rounding of the z − x round trip (≤ 1 ulp of 1),
    # which the box form does not have: a feasible z comes back bit for bit
    x, z = _hostile_points(gen, grid=None)
    ball = LINF.ball(x, eps)
    out = ball.project_(z.clone())
    reference = (x + LINF.project(z - x, eps)).clamp(0.0, 1.0)
    assert (out - reference).abs().max() <= 2**-52
    inside = (z >= (x - eps).clamp(min=0.0)) & (z <= (x + eps).clamp(max=1.0))
    assert torch.equal(out[inside], z[inside])
    assert ((out - x).abs() <= eps + 2**-52).all()  # bounds are fl(x ± ε)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(ball.project_(out.clone()), out)  # a projection: idempotent


def test_generic_ball_is_project_then_clip() -> None:
    gen = torch.Generator().manual_seed(1)
    x, z = _hostile_points(gen, grid=None)
    ball = L2.ball(x, 0.5)
    assert type(ball).__name__ == "Ball"
    assert torch.equal(ball.project_(z.clone()), (x + L2.project(z - x, 0.5)).clamp(0.0, 1.0))
