"""``resolve_target``: the target rules and target tensors of every targeted attack, on
hand-computed logits (no training; fast enough for mutation runs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.attacks.base import resolve_target

LOGITS = torch.tensor([[3.0, 1.0, -2.0, 0.5], [0.0, 5.0, 4.0, -1.0], [-3.0, 2.0, 1.0, 0.0]])
Y = torch.tensor([2, 1, 0])  # the least-likely class of row 0 and row 2 is the true class


class Fixed(nn.Module):
    """Returns LOGITS whatever the input; ``num_classes`` as a registry model declares it."""

    def __init__(self, logits: torch.Tensor = LOGITS, num_classes: int | None = 4) -> None:
        super().__init__()
        self.logits = logits
        if num_classes is not None:
            self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[: x.shape[0]]


X = torch.zeros(3, 1, 2, 2)


def test_no_target_is_untargeted() -> None:
    assert resolve_target(Fixed(), X, Y, None) is None


@pytest.mark.parametrize("spelling", ["least-likely", "Least_Likely", "  LEAST-LIKELY "])
def test_least_likely_is_the_lowest_logit_other_than_the_label(spelling: str) -> None:
    """Fails if the true class may be chosen (rows 0 and 2 have their lowest logit there), if
    the highest logit is taken, or if a spelling with ``_``, capitals or spaces is refused."""
    target = resolve_target(Fixed(), X, Y, spelling)
    assert target.tolist() == [3, 3, 3]
    assert target.dtype == torch.int64


def test_least_likely_uses_given_logits_without_a_forward_pass() -> None:
    class Refuses(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the model was called")

    assert resolve_target(Refuses(), X, Y, "least-likely", logits=LOGITS).tolist() == [3, 3, 3]


def test_next_is_the_following_class_modulo_the_class_count() -> None:
    y = torch.tensor([3, 0, 2])
    assert resolve_target(Fixed(), X, y, "next").tolist() == [0, 1, 3]


def test_random_targets_differ_from_the_label_and_follow_the_generator() -> None:
    """Fails if a random target may equal the label (a shift of 0 or k), if the shift is
    subtracted instead of added (other classes for the same draws), or if the generator is
    ignored."""
    k, n = 4, 400
    logits = torch.zeros(n, k)
    y = torch.arange(n) % k
    x = torch.zeros(n, 1, 2, 2)
    model = Fixed(logits)
    first = resolve_target(model, x, y, "random", generator=torch.Generator().manual_seed(7))
    again = resolve_target(model, x, y, "random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert (first != y).all() and first.min() >= 0 and first.max() < k
    assert set(first.tolist()) == set(range(k))
    shift = torch.randint(1, k, (n,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, (y + shift) % k)  # the label plus a uniform shift in 1..k-1


def test_rules_need_two_classes_and_known_labels() -> None:
    one = Fixed(torch.zeros(3, 1), num_classes=1)
    with pytest.raises(
        ValueError, match="targeted attacks need at least 2 classes, the model has 1"
    ):
        resolve_target(one, X, torch.zeros(3, dtype=torch.long), "next")
    with pytest.raises(ValueError, match="y"):  # a label ≥ the model's 4 classes
        resolve_target(Fixed(), X, torch.tensor([0, 4, 1]), "next")


def test_an_unknown_rule_names_the_known_ones() -> None:
    with pytest.raises(
        ValueError,
        match="unknown target rule 'nearest'; use a tensor of classes or one of next, random, least-likely$",
    ):
        resolve_target(Fixed(), X, Y, "nearest")


def test_a_target_of_another_type_is_refused_with_its_type() -> None:
    with pytest.raises(TypeError, match="target must be None, a tensor of class indices.*got list"):
        resolve_target(Fixed(), X, Y, [1, 2, 3])


def test_target_tensors_are_checked_against_the_declared_or_computed_class_count() -> None:
    """Fails if a target class past the model's classes is accepted: read from the model's
    ``num_classes``, or from given logits when the model declares none."""
    with pytest.raises(ValueError, match="target"):
        resolve_target(Fixed(), X, Y, torch.tensor([0, 1, 4]))
    undeclared = Fixed(num_classes=None)
    with pytest.raises(ValueError, match="target"):
        resolve_target(undeclared, X, Y, torch.tensor([0, 1, 4]), logits=LOGITS)
    ok = resolve_target(Fixed(), X, Y, torch.tensor([0, 1, 3], dtype=torch.int32))
    assert ok.tolist() == [0, 1, 3] and ok.dtype == torch.int64
    with pytest.raises(ValueError, match="target"):  # one target per sample
        resolve_target(Fixed(), X, Y, torch.tensor([0, 1]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA)")
def test_a_target_on_another_device_than_the_labels_is_refused() -> None:
    with pytest.raises(ValueError, match=r"target is on .* but y is on .*target.to\(y.device\)"):
        resolve_target(Fixed(), X, Y, torch.tensor([0, 1, 3], device="cuda"))
