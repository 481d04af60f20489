"""A gradient-masking warning names the attack and points at the user's line (the call or
the loop over a sweep), not into the library."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn

from underfire.attacks import BIM, FGSM, PGD, GradientMaskingWarning

# mutmut runs the tests through trampolines that add stack frames to every mutated function,
# so the location a warning reports differs there: these tests run in the ordinary suite only.
only_outside_mutation_runs = pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ, reason="mutation run: trampolines shift stack levels"
)


class ZeroGradient(nn.Module):
    """Logits that do not depend on the input: every input gradient is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor([0.5, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2] * 0 + self.b


X = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1])


def _masking_warnings(run) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run()
    return [w for w in seen if issubclass(w.category, GradientMaskingWarning)]


CASES = [(FGSM(eps=0.1), "FGSM"), (PGD(eps=0.1, steps=2), "PGD"), (BIM(eps=0.1, steps=2), "BIM")]


@pytest.mark.parametrize(("attack", "name"), CASES)
def test_a_masking_warning_names_the_attack_and_the_count(attack, name):
    """Fails if the warning's message loses the attack's name or the count of samples."""
    (w,) = _masking_warnings(lambda: attack(ZeroGradient(), X, Y))
    assert str(w.message).startswith(f"{name}: 2 of 2 input gradients are all zero")


@only_outside_mutation_runs
@pytest.mark.parametrize(("attack", "name"), CASES)
def test_a_call_warns_at_the_callers_line(attack, name):
    """Fails if the warning's stack level points into underfire (FGSM's pointed at base.py)."""
    (w,) = _masking_warnings(lambda: attack(ZeroGradient(), X, Y))
    assert w.filename == __file__


def test_a_sweeps_masking_warning_names_the_attack():
    """Fails if the sweep's warning is lost or loses the attack's name and the count."""
    (w,) = _masking_warnings(lambda: list(FGSM().sweep(ZeroGradient(), X, Y, [0.1, 0.2])))
    assert str(w.message).startswith("FGSM: 2 of 2 input gradients are all zero")


@only_outside_mutation_runs
def test_a_sweep_warns_at_the_loop_that_consumes_it():
    """Fails if the sweep's warning points past the caller's frame (it reported ``sys:1``)
    or loses the attack's name."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in FGSM().sweep(ZeroGradient(), X, Y, [0.1, 0.2]):
            pass
    (w,) = [w for w in seen if issubclass(w.category, GradientMaskingWarning)]
    assert w.filename == __file__
    assert str(w.message).startswith("FGSM: 2 of 2 input gradients are all zero")
