"""``torchrun --max-restarts``: a rank that dies once, and the restarted job finishes from
the parts the first attempt finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.distributed import tiny_restart as tiny
from tests.distributed.test_training import torchrun


@pytest.mark.slow
def test_a_restarted_job_reuses_the_finished_parts_and_completes(tmp_path: Path) -> None:
    done = torchrun("--max-restarts=1", "tests/distributed/tiny_restart.py", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "rank-1-died").exists()  # the first attempt did lose rank 1
    finished = json.loads((tmp_path / "done.json").read_text())
    # the second attempt finished, with the first part from the first attempt's cache
    assert finished == {
        "attempt": 1,
        "reused": ["first"],
        "sum": float(sum(i**2 + 1 for i in range(tiny.IMAGES))),
    }
    assert (tmp_path / "study" / "results.json").exists()
