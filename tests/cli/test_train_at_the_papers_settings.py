"""`underfire train` at the paper's gradient-regularization settings: the authors' Glorot init
is ross-cnn's default, so the command line does not train the flat-logit model that PyTorch's
init leads to; `--init` chooses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import one_line_error


@pytest.mark.slow
@pytest.mark.shared_data
def test_train_at_the_papers_lambda_learns_from_the_default_init(
    tmp_path: Path, cli, shared_data: Path
) -> None:
    # The README's example at the paper's batch and lr (300 steps of 256) reached 0.855 from
    # PyTorch's init and 0.9634 from Glorot's (docs/ross2018.md); this cheaper setting (200
    # steps of 64, the paper's per-example weight lam 109.8, the command's cosine schedule;
    # ≈ 1 min of CPU each) was measured at 0.9440 from Glorot's init and 0.9082 from PyTorch's
    # on the 10,000 test images (seed 0, one thread, 2026-12-06): the margins below are about
    # half of that gap.
    args = ["train", "--dataset", "mnist", "--data-root", str(shared_data), "--defense"]
    args += ["gradreg", "--lam", "109.8", "--steps", "200", "--batch-size", "64", "--lr", "2e-4"]
    args += ["--device", "cpu"]
    accuracy = {}
    for init in ("paper", "torch"):
        flag = [] if init == "paper" else ["--init", "torch"]
        out = tmp_path / init
        code, _, err = cli(*args, *flag, "--out", str(out))
        assert code == 0, err
        summary = json.loads((out / "train.json").read_text())
        assert summary["model_kwargs"] == ({} if init == "paper" else {"init": "torch"})
        accuracy[init] = summary["test_accuracy"]
    assert accuracy["paper"] >= 0.93, accuracy
    assert accuracy["paper"] >= accuracy["torch"] + 0.02, accuracy


def test_init_applies_to_ross_cnn_only(tmp_path: Path, cli) -> None:
    code, _, err = cli(
        "train", "--model", "resnet-small", "--init", "torch", "--out", str(tmp_path / "r")
    )
    one_line_error(code, err, "--init applies to ross-cnn only")
    assert not (tmp_path / "r" / "model.pt").exists()
