"""Each part of a carved split has its own fraction's size, and a wrong split name is refused
with a message that names it and the choices."""

from __future__ import annotations

import pytest
import torch

from underfire.data.splits import carve, check_split, seeded_permutation


@pytest.mark.parametrize("n", [10, 100, 359])
def test_every_part_has_its_fraction_and_the_last_the_remainder(n):
    """Fails if the remainder goes to a part other than the last (e.g. val takes everything
    after train and test is left empty)."""
    fractions = {"train": 0.7, "val": 0.1, "test": 0.2}
    sizes = {s: len(carve(n, s, fractions, seed=3)) for s in fractions}
    assert sizes["train"] == round(0.7 * n)
    assert sizes["val"] == round(0.1 * n)
    assert sizes["test"] == n - round(0.7 * n) - round(0.1 * n)


def test_a_two_part_split_gives_train_its_fraction_and_test_the_rest():
    """Fails if the first of two parts is taken for the last one (train gets every index)."""
    fractions = {"train": 0.75, "test": 0.25}
    train, test = (carve(40, s, fractions, seed=0) for s in ("train", "test"))
    assert (len(train), len(test)) == (30, 10)
    assert torch.equal(torch.cat([train, test]).sort().values, torch.arange(40))


def test_parts_are_sorted_slices_of_the_seeded_permutation():
    """Fails if a part is not the sorted slice of the seed's permutation (another order or seed)."""
    fractions = {"train": 0.5, "val": 0.25, "test": 0.25}
    perm = seeded_permutation(20, 7)
    assert torch.equal(carve(20, "train", fractions, 7), perm[:10].sort().values)
    assert torch.equal(carve(20, "val", fractions, 7), perm[10:15].sort().values)
    assert torch.equal(carve(20, "test", fractions, 7), perm[15:].sort().values)


def test_an_unknown_split_name_is_refused_naming_it_and_the_choices():
    """Fails if check_split accepts an unknown name, refuses a known one, or its message
    loses the name or the list of choices."""
    assert [check_split(s) for s in ("train", "val", "test")] == ["train", "val", "test"]
    with pytest.raises(ValueError, match=r"unknown split 'tset'; choose one of: train, val, test$"):
        check_split("tset")


def test_a_split_the_data_set_lacks_is_refused_naming_the_available_ones():
    """Fails if carve's message for a missing part loses the name or the available parts."""
    fractions = {"train": 0.8, "test": 0.2}
    with pytest.raises(
        ValueError, match=r"split 'val' is not available here; choose one of: train, test$"
    ):
        carve(10, "val", fractions, seed=0)
