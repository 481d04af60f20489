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
computations whose float sums span images, and random starts, are not (see
``docs/distributed.md``).
"""

from __future__ import annotations

import torch

from underfire.core import distributed
from underfire.studies.base import StudyRun

__all__ = ["gather", "shard"]


def shard(run: StudyRun, n: int) -> slice:
    """This rank's block of ``range(n)`` (all of it in one process)."""
    if n < 0:
        raise ValueError(f"cannot shard {n} items; n must be ≥ 0")
    return distributed.shard(n)


def gather(run: StudyRun, local: torch.Tensor) -> torch.Tensor:
    """The per-item results of every rank's :func:`shard` block, in the original order, on
    every rank (on ``local``'s device)."""
    if not distributed.active():
        return local
    n = int(distributed.all_sum(torch.tensor([local.shape[0]], dtype=torch.int64)).item())
    return distributed.gather(local, n)
