"""`underfire train --defense ...` builds the defense objectives (distillation with its teacher)."""

from __future__ import annotations

import json

import pytest
import torch

from underfire.checkpoint import read_checkpoint
from underfire.cli import main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--defense", "gradreg", "--lam", "0.5"],
            {"name": "gradreg", "lam": 0.5, "certainty_insensitive": False},
        ),
        (
            ["--defense", "distillation", "--temperature", "20"],
            {"name": "distillation", "temperature": 20.0},
        ),
    ],
)
def test_train_with_defense(tmp_path, argv: list[str], expected: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(
            [
                "train",
                "--dataset",
                "digits",
                "--steps",
                "6",
                "--batch-size",
                "32",
                "--out",
                str(tmp_path),
                "--device",
                "cpu",
                *argv,
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    meta = read_checkpoint(tmp_path / "model.pt")["meta"]
    assert meta["objective"] == expected
    assert json.loads((tmp_path / "train.json").read_text())["steps"] == 6
    if expected["name"] == "distillation":
        assert (
            read_checkpoint(tmp_path / "model.teacher.pt")["meta"]["objective"]["name"]
            == "distillation-teacher"
        )


def test_train_rejects_an_option_the_defense_does_not_take(tmp_path, capsys) -> None:
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--steps",
            "2",
            "--out",
            str(tmp_path),
            "--defense",
            "distillation",
            "--lam",
            "3",
        ]
    )
    assert code == 2
    assert "lam" in capsys.readouterr().err
