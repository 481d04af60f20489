"""PGD's and BIM's settings: default step sizes, refused settings with their fix, the random
start helper, and ε = 0."""

from __future__ import annotations

import pytest
import torch

from underfire.attacks import BIM, PGD
from underfire.attacks.pgd import random_start_point
from underfire.core.norms import get_norm


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_point_is_the_norms_random_start(norm):
    """Fails if the helper passes another input, radius, norm or generator."""
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    got = random_start_point(x, 0.2, norm, torch.Generator().manual_seed(7))
    want = get_norm(norm).random_start(x, 0.2, torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(got, x)


def test_default_step_sizes_follow_madry_and_kurakin():
    """Fails if PGD's default α is not 2.5·ε/steps, BIM's not ε/steps, or a given step size
    is not used as it is."""
    assert PGD(eps=0.3, steps=10).alpha == pytest.approx(0.075)
    assert PGD(eps=0.3, steps=10, step_size=0.01).alpha == 0.01
    assert BIM(eps=0.3, steps=10).alpha == pytest.approx(0.03)
    assert BIM(eps=0.3, steps=10, step_size=0.05).alpha == 0.05


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"step_size": 0.0}, ValueError, "step_size must be > 0, got 0"),
        ({"step_size": "big"}, TypeError, "step_size must be a number, got str"),
        (
            {"step_size": 2.0},
            ValueError,
            "step_size=2 exceeds 1: inputs live in [0, 1], so an L∞ ball this large allows "
            "any image; give ε on the [0, 1] scale (e.g. 8/255 ≈ 0.031, not 8)",
        ),
        ({"steps": 0}, ValueError, "steps must be ≥ 1, got 0"),
        ({"restarts": 0}, ValueError, "restarts must be ≥ 1, got 0"),
        (
            {"restarts": 2, "random_start": False},
            ValueError,
            "restarts > 1 repeats the same run without a random start; set random_start=True",
        ),
        ({"seed": -1}, ValueError, "seed must be ≥ 0, got -1"),
        ({"norm": "l1"}, ValueError, "norm must be one of ('linf', 'l2'), got 'l1'"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(settings, error, message):
    """Fails if a bad setting is accepted or its message loses the name, value or fix."""
    with pytest.raises(error) as info:
        PGD(**settings)
    assert str(info.value) == message


def test_settings_are_kept_and_an_l2_step_may_exceed_one():
    """Fails if a setting or default (BIM: 10 steps from x; PGD: 40 steps, one run) is stored
    altered, an L2 step above 1 is refused, or the determinism flag does not follow the
    random start."""
    pgd = PGD(eps=2.0, norm="l2", step_size=1.5, steps=3, restarts=2, early_stop=True, seed=4)
    assert (pgd.eps, pgd.norm, pgd.step_size, pgd.steps) == (2.0, "l2", 1.5, 3)
    assert (pgd.restarts, pgd.early_stop, pgd.seed, pgd.random_start) == (2, True, 4, True)
    assert pgd.deterministic is False
    assert PGD(random_start=False).deterministic is True
    bim = BIM()
    assert (bim.eps, bim.steps, bim.norm, bim.random_start, bim.early_stop) == (
        0.3,
        10,
        "linf",
        False,
        False,
    )
    assert BIM(early_stop=True).early_stop is True
    assert (PGD().eps, PGD().steps, PGD().restarts) == (0.3, 40, 1)


def test_eps_zero_returns_the_input(tiny_model, batch):
    """Fails if PGD with ε = 0 moves the input (e.g. by its random start)."""
    x, y = batch
    for attack in (PGD(eps=0.0, seed=0), PGD(eps=0.0, restarts=3, seed=0), BIM(eps=0.0)):
        assert torch.equal(attack(tiny_model, x, y), x)
