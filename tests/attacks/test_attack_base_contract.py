"""The base class's contract on a hand-written attack (no training; fast enough for mutation
runs): the result is projected onto the ball only when the attack has one, keeps the input's
dtype, and every refusal names the problem and the fix in full."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch import nn

from underfire.attacks import PGD, GradientMaskingWarning
from underfire.attacks.base import Attack, check_ball
from underfire.core.errors import NonFiniteError

N = 5  # batch size; the images have 1 channel, so x.shape[1] != N


class Push(Attack):
    """Adds ``delta`` to every pixel (or NaN), returned in float32 whatever the input's dtype."""

    name = "push-test"

    def __init__(
        self,
        eps: float | None = None,
        norm: str | None = None,
        delta: float = 0.5,
        stages: tuple[int, ...] = (1, 2),
    ) -> None:
        self.eps, self.norm, self.delta, self.stages = eps, norm, delta, stages

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Any
    ) -> torch.Tensor:
        return (x + self.delta).float()


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()


def batch(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.full((N, 1, 2, 2), 0.25, dtype=dtype)
    return x, torch.tensor([0, 1, 2, 0, 1])


def test_the_result_is_projected_onto_the_ball_only_when_the_attack_has_one() -> None:
    """Fails if a missing ε or norm is treated as a ball (or a ball is not applied)."""
    x, y = batch()
    m = model().double()
    xd = x.double()
    inside = Push(eps=0.1, norm="linf")(m, xd, y)
    torch.testing.assert_close(inside, torch.full_like(xd, 0.35))
    assert torch.equal(Push(eps=None, norm="linf")(m, xd, y), torch.full_like(xd, 0.75))
    assert torch.equal(Push(eps=0.1, norm=None)(m, xd, y), torch.full_like(xd, 0.75))
    assert torch.equal(Push(eps=None, norm=None, delta=2.0)(m, xd, y), torch.ones_like(xd))
    unbounded = Push(eps=None, norm=None)(m, xd, y)
    assert inside.dtype == unbounded.dtype == torch.float64  # the input's, not the attack's


def test_a_non_finite_result_is_refused_with_the_attack_and_the_fix() -> None:
    x, y = batch()
    message = (
        "Push produced NaN or infinite values (the model's input gradients are not finite); "
        "check the model for operations that are not differentiable everywhere (sqrt, log, "
        "division) on inputs in [0, 1]"
    )
    with pytest.raises(NonFiniteError, match=f"^{re.escape(message)}$"):
        Push(delta=float("nan"))(model(), x, y)


@pytest.mark.parametrize("method, hook", [("__call__", "_perturb"), ("sweep", "_sweep")])
def test_overriding_a_final_method_is_refused_at_class_creation(method: str, hook: str) -> None:
    message = (
        f"Bad overrides Attack.{method}, which is final (the base class owns validation, model "
        f"state and the result's bounds): implement {hook} instead"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        type("Bad", (Attack,), {method: lambda self, *a, **k: None})


def test_a_model_that_is_not_a_module_is_refused_with_its_type() -> None:
    x, y = batch()

    def forward(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(1)

    with pytest.raises(TypeError, match=r"^model must be a torch.nn.Module, got function$"):
        Push()(forward, x, y)


def test_target_tensors_are_checked_by_their_name() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match="^target"):  # one target per sample
        Push()(model(), x, y, target=torch.tensor([1, 2]))


def test_a_target_equal_to_the_label_is_refused_with_the_count_and_the_fix() -> None:
    x, y = batch()
    target = torch.tensor([0, 2, 2, 0, 0])  # equal to y for samples 0, 2 and 3
    message = (
        f"target equals the true label y for 3 of {N} samples; a targeted attack needs a class "
        "other than y (for those samples the attack would count as successful without "
        "changing anything): choose other targets, or a rule such as 'next'"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Push()(model(), x, y, target=target)


def test_alpha_and_step_size_together_are_refused_with_the_fix() -> None:
    message = (
        "PGD got both alpha and step_size; alpha is torchattacks' name for step_size: "
        "pass one of them"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        PGD(model(), eps=0.1, alpha=0.01, step_size=0.01)


def test_config_turns_sequences_of_settings_into_lists_of_plain_values() -> None:
    assert Push(stages=(3, 4)).config() == {
        "name": "push-test",
        "eps": None,
        "norm": None,
        "delta": 0.5,
        "stages": [3, 4],
    }


class NanGradient(nn.Module):
    """Finite logits whose input gradient is NaN (0 · sqrt'(0) = 0 · ∞)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = model()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + 0 * torch.sqrt(x.flatten(1).sum(1, keepdim=True) * 0)


def test_non_finite_input_gradients_warn_as_gradient_masking() -> None:
    """Fails if the NaN-gradient warning is not a GradientMaskingWarning."""
    x, y = batch()
    with pytest.warns(
        GradientMaskingWarning, match=rf"PGD: {N} of {N} input gradients contain NaN"
    ):
        PGD(eps=0.1, steps=1, random_start=False)(NanGradient().eval(), x, y)


def test_a_ball_checks_its_radius_for_its_own_norm() -> None:
    """Fails if the radius is checked as an L∞ one whatever the norm (an L2 ε of 2 is valid)."""
    assert check_ball("l2", 2.0) == ("l2", 2.0)
    with pytest.raises(ValueError, match="eps"):
        check_ball("linf", 2.0)
    with pytest.raises(ValueError, match="norm must be one of"):
        check_ball("l3", 0.1)


def test_underflowing_input_gradients_warn_as_gradient_masking() -> None:
    """Fails if the underflow warning (largest |∂L/∂x| below 1e-30) is not a
    GradientMaskingWarning."""
    x, y = batch()
    tiny = model()
    with torch.no_grad():
        tiny[1].weight.mul_(1e-33)
    with pytest.warns(GradientMaskingWarning, match=rf"PGD: {N} of {N} input gradients underflow"):
        PGD(eps=0.1, steps=1, random_start=False)(tiny, x, y)
