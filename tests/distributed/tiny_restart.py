"""A study whose second part kills rank 1 on the first attempt: ``torchrun --max-restarts 1``
starts the job again, which reuses the first part from the cache and finishes.

``python tiny_restart.py OUT`` runs it into ``OUT/study``; rank 0 writes ``OUT/done.json``
(the attempt that finished and the parts it reused).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from underfire.core import distributed
from underfire.studies import Part, Study, StudyRun, gather, run_study, shard

IMAGES = 9


@dataclass(frozen=True)
class Config:
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first(run: StudyRun) -> torch.Tensor:
    """A sharded per-image part: cached by rank 0 once it is done."""
    values = torch.arange(IMAGES, dtype=torch.float64)
    return gather(run, values[shard(run, IMAGES)] ** 2)


def second(run: StudyRun) -> dict[str, float]:
    """Sharded too: rank 0 waits in the gather for rank 1, which dies on the first attempt
    (torchrun then stops rank 0 and starts both again); nothing of it is cached."""
    died = Path(sys.argv[1]) / "rank-1-died"
    if distributed.rank() == 1 and not died.exists():
        died.write_text("once\n")
        os._exit(3)
    squares = run.results["first"]
    return {"sum": float(gather(run, squares[shard(run, IMAGES)] + 1).sum())}


STUDY = Study(
    name="restarted",
    title="a study restarted by torchrun",
    configure=Config,
    parts=(Part("first", first, store="torch"), Part("second", second)),
    results_file=lambda results: results["second"],
)


if __name__ == "__main__":
    torch.set_num_threads(1)
    distributed.init("cpu")
    out = Path(sys.argv[1])
    results = run_study(STUDY, out=out / "study")
    if distributed.is_main():
        done = {
            "attempt": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
            "reused": results["run"]["reused"],
            "sum": results["second"]["sum"],
        }
        (out / "done.json").write_text(json.dumps(done))
    distributed.teardown()
