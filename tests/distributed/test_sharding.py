"""How the images are shared out: blocks of items, blocks of whole batches (no torchrun)."""

from __future__ import annotations

import pytest

from underfire.core import distributed


@pytest.mark.parametrize(
    ("n", "parts", "batch", "sizes"),
    [
        (45, 2, None, [23, 22]),
        (45, 2, 16, [32, 13]),  # batches of 16, 16 | 13
        (100, 3, 10, [40, 30, 30]),  # 10 batches: 4, 3, 3
        (10, 4, 16, [10, 0, 0, 0]),  # one batch: the other ranks have none
        (64, 2, 64, [64, 0]),
        (0, 2, 8, [0, 0]),
    ],
)
def test_blocks_of_whole_batches(n: int, parts: int, batch: int | None, sizes: list[int]) -> None:
    assert distributed.shard_sizes(n, parts, batch_size=batch) == sizes
    blocks = [distributed.shard(n, batch_size=batch, rank_=r, parts=parts) for r in range(parts)]
    assert [b.stop - b.start for b in blocks] == sizes
    assert [i for b in blocks for i in range(n)[b]] == list(range(n))  # tiled, in order
    if batch is not None:  # every block begins where a one-process batch begins
        assert all(b.start % batch == 0 for b in blocks if b.stop > b.start)


def test_one_process_takes_every_batch_of_one_process() -> None:
    assert distributed.my_batches(45, 16) == [slice(0, 16), slice(16, 32), slice(32, 45)]
    assert distributed.shard(45, batch_size=16) == slice(0, 45)


@pytest.mark.parametrize("batch", [0, -1, 2.5, True])
def test_a_batch_size_that_is_no_positive_int_is_refused(batch: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be an int ≥ 1"):
        distributed.shard_sizes(10, 2, batch_size=batch)  # type: ignore[arg-type]
