"""How a study's part splits its images across the ``torchrun`` processes.

A part that computes one result per image (an attack, a map) takes this rank's block with
:func:`shard`, computes it, and puts the blocks back with :func:`gather`: every rank gets all
``n`` results, each computed exactly once, in the original order. In one process ``shard`` is
everything and ``gather`` returns its input, so a part written this way runs unchanged
without ``torchrun``::

    def attacked(run: StudyRun) -> list[bool]:
        x, y = run.state["data"].x, run.state["data"].y
        block = shard(run, len(y))
        x_adv = attack(model, x[block], y[block])
        return gather(run, predict(model, x_adv) == y[block]).tolist()

The blocks are contiguous and of sizes differing by at most one. Per-image results are
bit-identical to one process (on the CPU) when each image's result depends on that image
alone: deterministic attacks (FGSM, PGD without a random start) in eval mode. Batched
computations whose float sums span images, and random starts, are not, unless the blocks are
of whole batches: with ``batch_size`` (the same in both calls) every rank's batches are
batches of the one-process run, so anything computed per batch (a random start seeded per
call, as the attacks' ``seed`` does) is as in one process (see ``docs/distributed.md``).
"""

from __future__ import annotations

import torch

from underfire.core import distributed
from underfire.studies.base import StudyRun

__all__ = ["gather", "shard"]


def shard(run: StudyRun, n: int, *, batch_size: int | None = None) -> slice:
    """This rank's block of ``range(n)`` (all of it in one process); with ``batch_size``, a
    block of whole batches of that size."""
    if n < 0:
        raise ValueError(f"cannot shard {n} items; n must be ≥ 0")
    return distributed.shard(n, batch_size=batch_size)


def gather(run: StudyRun, local: torch.Tensor, *, batch_size: int | None = None) -> torch.Tensor:
    """The per-item results of every rank's :func:`shard` block (sharded with the same
    ``batch_size``), in the original order, on every rank (on ``local``'s device)."""
    if not distributed.active():
        return local
    n = int(distributed.all_sum(torch.tensor([local.shape[0]], dtype=torch.int64)).item())
    return distributed.gather(local, n, batch_size=batch_size)
