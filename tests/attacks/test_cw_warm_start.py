"""CW's warm start: each binary-search step after the first begins at the sample's best
example so far (the clean input where none was found); the authors' cold start is the
default."""

from __future__ import annotations

import pytest
import torch

from underfire.attacks import CW

SETTINGS = {"steps": 12, "const": 1.0, "lr": 0.05, "abort_early": False}


@pytest.fixture(scope="module")
def digits(trained_digits):
    model, test = trained_digits
    return model, test.x[:24], test.y[:24]


def _starts(attack: CW, model, x, y) -> list[torch.Tensor]:
    """The image each binary-search step of ``attack`` starts from."""
    starts: list[torch.Tensor] = []
    step = attack._search_step

    def spy(model, x, labels, w_start, *args, **kwargs):
        starts.append(0.5 * (torch.tanh(w_start) + 1))
        return step(model, x, labels, w_start, *args, **kwargs)

    attack._search_step = spy  # type: ignore[method-assign]
    attack(model, x, y)
    return starts


def test_warm_start_begins_the_second_search_step_at_the_first_ones_best(digits) -> None:
    model, x, y = digits
    first_best = CW(binary_search_steps=1, **SETTINGS)(model, x, y)
    found = (first_best - x).flatten(1).abs().amax(1) > 0
    assert bool(found.any())  # the first step found examples to start from
    warm = _starts(CW(binary_search_steps=2, warm_start=True, **SETTINGS), model, x, y)
    cold = _starts(CW(binary_search_steps=2, **SETTINGS), model, x, y)
    assert len(warm) == len(cold) == 2
    for starts in (warm, cold):
        torch.testing.assert_close(starts[0], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(cold[1], x, atol=1e-5, rtol=0)
    # where the first step found an example, the warm second step starts there; elsewhere
    # at the clean input
    torch.testing.assert_close(warm[1], first_best, atol=1e-5, rtol=0)
    assert (warm[1][found] - x[found]).abs().amax() > 0.01


def test_warm_start_keeps_every_example_and_never_loses_its_best(digits) -> None:
    model, x, y = digits
    one = CW(binary_search_steps=1, **SETTINGS)(model, x, y)
    three = CW(binary_search_steps=3, warm_start=True, **SETTINGS)(model, x, y)
    wrong = lambda x_adv: model(x_adv).argmax(1) != y  # noqa: E731
    assert bool((wrong(three) >= wrong(one)).all())
    l2 = lambda x_adv: (x_adv - x).flatten(1).norm(dim=1)  # noqa: E731
    both = wrong(one) & wrong(three)
    assert bool((l2(three)[both] <= l2(one)[both] + 1e-6).all())
