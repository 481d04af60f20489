"""``robust_accuracy``, ``transfer_matrix`` and the audit under ``torchrun`` (gloo, two CPU
processes) give every number and every per-sample result of one process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.distributed import tiny_attacks as tiny
from tests.distributed.test_training import torchrun

#: Timings differ from run to run; everything else must not.
TIMINGS = {"seconds", "part_seconds", "run"}
#: Per rank, checked by :func:`assert_shared`.
PER_RANK = {"rank_warnings", "rank_images"}


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """One torchrun launch for every check (starting one costs seconds)."""
    out = tmp_path_factory.mktemp("attacks")
    torch.set_num_threads(1)
    tiny.train_models(out / "models.pt")
    done = torchrun("tests/distributed/tiny_attacks.py", str(out), timeout=480)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def shared(two_ranks: Path) -> dict[str, Any]:
    return torch.load(two_ranks / "results.pt")


@pytest.fixture(scope="module")
def alone(two_ranks: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    return tiny.evaluations(*tiny.models(two_ranks / "models.pt"))


def assert_same(shared: Any, alone: Any, where: str = "result") -> None:
    """Equal to the bit: tensors, numbers, strings, nested in dicts and lists."""
    if isinstance(alone, dict):
        keys = set(alone) - TIMINGS - PER_RANK
        assert set(shared) - TIMINGS - PER_RANK == keys, where
        for key in keys:
            assert_same(shared[key], alone[key], f"{where}[{key!r}]")
    elif isinstance(alone, (list, tuple)):
        assert len(shared) == len(alone), where
        for i, (s, a) in enumerate(zip(shared, alone, strict=True)):
            assert_same(s, a, f"{where}[{i}]")
    elif isinstance(alone, torch.Tensor):
        assert shared.dtype == alone.dtype and torch.equal(shared, alone), where
    else:
        assert shared == alone, where


def assert_shared(mine: dict[str, Any], theirs: dict[str, Any], extra: int = 0) -> None:
    """Each rank saw the warnings of one process, and did part of its work: the ranks'
    forward passes add up to one process's (plus ``extra`` images: one per additional rank
    for the thread choice)."""
    assert mine["rank_warnings"] == theirs["rank_warnings"] * 2
    assert len(mine["rank_images"]) == 2 and min(mine["rank_images"]) > 0
    assert max(mine["rank_images"]) < theirs["rank_images"][0]
    assert sum(mine["rank_images"]) == theirs["rank_images"][0] + extra


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [f"{a}-{mode}" for a in tiny.ATTACKS for mode in ("open", "exhaustive")]
)
def test_robust_accuracy_of_two_ranks_is_that_of_one_process(
    shared: dict[str, Any], alone: dict[str, Any], name: str
) -> None:
    """Accuracies, counts, per-sample results and the first 40 examples (32 of rank 0, 8 of
    rank 1), bit-identical; every rank raises the soundness warnings of one process. "seeded":
    PGD's random start, seeded per call, draws the same noise since every rank's batches are
    one-process batches."""
    mine, theirs = shared["evaluations"][name], alone[name]
    assert theirs["per_sample"]["correct"].shape == (len(tiny.EPS), tiny.IMAGES)
    assert theirs["examples"]["x_adv"].shape[:2] == (len(tiny.EPS), tiny.KEEP)
    assert_same(mine, theirs, name)
    assert_shared(mine, theirs, extra=1)
    if name.startswith("weak"):  # the first batch's checks, run by rank 0, said on both
        assert any("single-step FGSM" in m for m in theirs["rank_warnings"][0])


@pytest.mark.slow
def test_a_rank_without_a_batch_gathers_nothing_and_returns_the_whole_result(
    shared: dict[str, Any], alone: dict[str, Any]
) -> None:
    mine, theirs = shared["evaluations"]["one-batch"], alone["one-batch"]
    assert_same(mine, theirs, "one-batch")
    assert mine["rank_warnings"] == theirs["rank_warnings"] * 2
    # rank 0 attacked the one batch; rank 1 only measured the model for its threads
    assert mine["rank_images"] == [theirs["rank_images"][0], 1]


@pytest.mark.slow
def test_transfer_matrix_of_two_ranks_is_that_of_one_process(
    shared: dict[str, Any], alone: dict[str, Any]
) -> None:
    mine, theirs = shared["evaluations"]["transfer"], alone["transfer"]
    assert theirs["per_sample"]["correct"].shape == (2, 2, len(tiny.EPS), tiny.IMAGES)
    # two distinct models: the transferred cells differ from the white-box ones
    assert theirs["accuracy"][0][1] != theirs["accuracy"][0][0]
    assert_same(mine, theirs, "transfer")
    assert_shared(mine, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ross2018-transfer", "zhang2020-attack", "zhang2020-maps"])
def test_the_reproductions_sharded_loops_give_the_results_of_one_process(
    shared: dict[str, Any], alone: dict[str, Any], name: str
) -> None:
    mine, theirs = shared["evaluations"][name], alone[name]
    assert_same(mine, theirs, name)
    assert_shared(mine, theirs)


@pytest.mark.slow
def test_the_audit_of_two_ranks_is_that_of_one_process(two_ranks: Path, tmp_path: Path) -> None:
    """Every part's results, per-sample lists included; rank 0 alone wrote the folder, with
    the files one process writes and the same results.json."""
    torch.set_num_threads(1)
    model, _ = tiny.models(two_ranks / "models.pt")
    alone = tiny.audited(model, tmp_path / "audit")
    shared = torch.load(two_ranks / "results.pt")["audit"]
    assert_same(shared, alone, "audit")
    assert len(alone["attack-pgd"]["correct"][0]) == tiny.AUDIT["n"]
    assert "ADV²" in alone["maps-grad"]["attacks"]
    # the attacks and maps were shared (the diagnosis and the checks run on every rank)
    assert 0 < min(shared["rank_images"]) and max(shared["rank_images"]) < alone["rank_images"][0]
    folders = two_ranks / "audit", tmp_path / "audit"
    files = [sorted(p.relative_to(f).as_posix() for p in f.rglob("*")) for f in folders]
    assert files[0] == files[1]
    saved = [json.loads((f / "results.json").read_text()) for f in folders]
    assert_same(saved[0], saved[1], "results.json")
