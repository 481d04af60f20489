"""Studies and ``evaluate`` under ``torchrun`` (gloo, two CPU processes) equal one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.distributed import tiny_study
from tests.distributed.test_training import torchrun
from underfire.studies import run_study


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study")
    done = torchrun("tests/distributed/tiny_study.py", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_a_sharded_part_gives_each_image_the_result_of_one_process(two_ranks: Path) -> None:
    """FGSM and PGD (no random start) per image: bit-identical, once each, in order."""
    torch.set_num_threads(1)
    alone = run_study(tiny_study.STUDY)["attacked"]
    shared = torch.load(two_ranks / "results.pt")["results"]
    assert set(shared) == set(alone)
    for name, value in alone.items():
        assert shared[name].shape[0] == tiny_study.IMAGES
        assert torch.equal(shared[name], value), name


@pytest.mark.slow
def test_rank_zero_alone_writes_the_study_folder(two_ranks: Path) -> None:
    folder = two_ranks / "study"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [".underfire-runs.json", "config.json", "parts", "report.html", "report.md", "results.json"]
    )
    runs = json.loads((folder / ".underfire-runs.json").read_text())
    assert json.dumps(runs).count("run_study('sharded-attack')") >= 1
    shared = torch.load(two_ranks / "results.pt")["results"]
    accuracy = json.loads((folder / "results.json").read_text())["pgd_accuracy"]
    assert accuracy == shared["pgd_right"].double().mean().item()


@pytest.mark.slow
def test_evaluate_shares_the_images_and_reports_the_whole_set(two_ranks: Path) -> None:
    torch.set_num_threads(1)
    alone = tiny_study.metrics()
    shared = torch.load(two_ranks / "results.pt")["evaluate"]
    assert shared["n"] == alone["n"] and shared["accuracy"] == alone["accuracy"]
    # each batch's cross-entropy is summed in float32 (the model's dtype) over a rank's
    # half of it, then the halves are added: equal up to float32 rounding (~1e-7 relative)
    assert shared["loss"] == pytest.approx(alone["loss"], rel=1e-6)
