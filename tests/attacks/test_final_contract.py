"""The attack contract is the base class's: ``__call__`` and ``sweep`` are final, subclasses
fill ``_perturb`` and, to share work across radii, ``_sweep``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from underfire.attacks import FGSM, PGD, Attack
from underfire.attacks.substitute import SubstituteAttack


def test_a_subclass_overriding_call_is_refused():
    with pytest.raises(TypeError, match="final.*_perturb"):

        class Loud(Attack):
            def __call__(self, *args, **kwargs):  # type: ignore[misc,override]
                return None


def test_a_subclass_overriding_sweep_is_refused():
    with pytest.raises(TypeError, match="final.*_sweep"):

        class Eager(FGSM):
            def sweep(self, model, x, y, eps, target=None):  # type: ignore[misc,override]
                return iter(())


class _Counting(FGSM):
    """FGSM whose sweep hook records what the base class hands it."""

    calls: list[tuple[list[float], object]]

    def _sweep(self, model, x, y, eps, target) -> Iterator[torch.Tensor]:
        self.calls.append((list(eps), target))
        yield from super()._sweep(model, x, y, eps, target)


def test_sweep_validates_before_the_hook_and_hands_it_checked_radii(tiny_model, batch):
    x, y = batch
    attack = _Counting(eps=0.1)
    attack.calls = []
    with pytest.raises(ValueError, match="eps"):
        list(attack.sweep(tiny_model, x, y, [0.1, -0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        list(attack.sweep(tiny_model, x + 2, y, [0.1]))
    assert attack.calls == []
    out = list(attack.sweep(tiny_model, x[:0], y[:0], [0.1, 0.2]))
    assert [o.shape[0] for o in out] == [0, 0] and attack.calls == []  # empty: no hook
    list(attack.sweep(tiny_model, x, y, [0.05, 0.1], target="next"))
    assert attack.calls == [([0.05, 0.1], "next")]


def test_sweep_of_an_attack_without_eps_is_refused(tiny_model, batch):
    from underfire.attacks import CW

    x, y = batch
    with pytest.raises(ValueError, match="no ε to sweep"):
        list(CW(steps=2).sweep(tiny_model, x, y, [0.1]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: FGSM(eps=0.1),
        lambda: PGD(eps=0.1, step_size=0.02, steps=3, seed=0),
        lambda: SubstituteAttack(n_seed=6, rounds=2, epochs=1, seed=0),
    ],
    ids=["fgsm", "pgd", "substitute"],
)
def test_sweep_equals_one_call_per_eps(tiny_model, batch, make):
    x, y = batch
    eps = [0.0, 0.05, 0.1]
    swept = list(make().sweep(tiny_model, x, y, eps))
    attack = make()
    for e, got in zip(eps, swept, strict=True):
        torch.testing.assert_close(got, attack.with_eps(e)(tiny_model, x, y), rtol=0, atol=0)


def test_call_options_other_than_the_attacks_own_are_refused(tiny_model, batch):
    x, y = batch
    with pytest.raises(TypeError, match="target_map"):
        FGSM(eps=0.1)(tiny_model, x, y, target_map=torch.zeros(6, 1, 8, 8))


def test_a_bound_attack_still_calls_through_the_final_call(tiny_model, batch):
    x, y = batch
    bound = FGSM(tiny_model, eps=0.1)
    assert isinstance(bound.model, nn.Module)
    torch.testing.assert_close(bound(x, y), FGSM(eps=0.1)(tiny_model, x, y), rtol=0, atol=0)
