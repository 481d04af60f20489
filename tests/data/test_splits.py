import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from underfire.data.splits import carve


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 500),
    seed=st.integers(0, 10_000),
    train=st.floats(0.1, 0.8),
    val=st.floats(0.05, 0.15),
)
def test_carve_partitions_every_index_exactly_once(n, seed, train, val):
    fractions = {"train": train, "val": val, "test": 1 - train - val}
    parts = [carve(n, s, fractions, seed) for s in ("train", "val", "test")]
    joined = torch.cat(parts).sort().values
    assert torch.equal(joined, torch.arange(n))
    assert abs(len(parts[0]) - round(train * n)) <= 1
    assert torch.equal(parts[1], carve(n, "val", fractions, seed))  # deterministic
