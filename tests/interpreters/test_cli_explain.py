"""`underfire explain` and `underfire train-rts` end to end on a small digits checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from underfire.checkpoint import save_checkpoint
from underfire.cli import main


@pytest.fixture(scope="module")
def checkpoint(digits_small, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, digits_small, meta={"dataset": "digits", "data_seed": 0})
    return path


def test_explain_writes_figure_and_skips_cam(checkpoint, tmp_path, capsys):
    out = tmp_path / "explain"
    rc = main(
        [
            "explain",
            "--checkpoint",
            str(checkpoint),
            "--interpreter",
            "grad,cam,mask",
            "--n",
            "3",
            "--mask-steps",
            "5",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert (out / "explain.png").stat().st_size > 1000
    summary = json.loads((out / "explain.json").read_text())
    assert (
        "skipped" in summary["interpreters"]["cam"]
        and "GradCAM" in summary["interpreters"]["cam"]["skipped"]
    )
    maps = torch.load(out / "maps.pt", weights_only=True)
    assert set(maps) == {"grad", "mask"} and maps["grad"].shape == (3, 1, 8, 8)
    assert "skipping cam" in capsys.readouterr().err


def test_explain_rejects_unknown_and_rts_without_checkpoint(checkpoint, tmp_path, capsys):
    assert (
        main(
            [
                "explain",
                "--checkpoint",
                str(checkpoint),
                "--interpreter",
                "lime",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "unknown interpreter 'lime'" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                "--checkpoint",
                str(checkpoint),
                "--interpreter",
                "rts",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "train-rts" in capsys.readouterr().err


def test_train_rts_then_explain_with_it(checkpoint, tmp_path):
    rts_dir = tmp_path / "rts"
    rc = main(
        [
            "train-rts",
            "--checkpoint",
            str(checkpoint),
            "--steps",
            "20",
            "--batch-size",
            "16",
            "--width",
            "8",
            "--eval-n",
            "40",
            "--out",
            str(rts_dir),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    summary = json.loads((rts_dir / "rts.json").read_text())
    assert set(summary["test"]) >= {"kept", "destroyed", "blurred_kept", "area"}
    assert torch.load(rts_dir / "rts.pt", weights_only=True)["format"] == "underfire.rts/1"
    rc = main(
        [
            "explain",
            "--checkpoint",
            str(checkpoint),
            "--interpreter",
            "rts,gradcam",
            "--n",
            "2",
            "--rts-checkpoint",
            str(rts_dir / "rts.pt"),
            "--out",
            str(tmp_path / "e"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
