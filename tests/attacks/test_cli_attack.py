"""`underfire attack`: table, results.json, adversarial examples and figure."""

from __future__ import annotations

import json

import pytest
import torch

from underfire.checkpoint import save_checkpoint
from underfire.cli import main


@pytest.fixture(scope="module")
def checkpoint(trained_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, trained_digits[0], meta={"dataset": "digits", "data_seed": 0})
    return path


def test_attack_command_writes_outputs(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "attack",
        "--checkpoint",
        str(checkpoint),
        "--attack",
        "pgd",
        "--eps",
        "0.1,0.3",
        "--steps",
        "5",
        "--n",
        "40",
        "--save",
        "6",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "success_rate" in printed and "0.3" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["eps"] == [0.1, 0.3] and result["n"] == 40 and result["dataset"] == "digits"
    assert result["accuracy"][1] <= result["accuracy"][0] < result["clean_accuracy"] + 1e-9
    saved = torch.load(out / "adversarial.pt")
    assert saved["x_adv"].shape == (2, 6, 1, 8, 8) and saved["x"].shape == (6, 1, 8, 8)
    assert (saved["x_adv"][0] - saved["x"]).abs().max() <= 0.1 + 1e-6
    assert (out / "attack.png").stat().st_size > 0


def test_attack_command_without_eps_and_errors(checkpoint, tmp_path, capsys):
    assert (
        main(
            [
                "attack",
                "--checkpoint",
                str(checkpoint),
                "--attack",
                "jsma",
                "--n",
                "5",
                "--save",
                "2",
                "--out",
                str(tmp_path / "j"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "j" / "results.json").read_text())["eps"] == [None]
    capsys.readouterr()
    assert (
        main(
            [
                "attack",
                "--checkpoint",
                str(checkpoint),
                "--attack",
                "deepfool",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "unknown attack 'deepfool'" in capsys.readouterr().err
    assert (
        main(
            [
                "attack",
                "--checkpoint",
                str(checkpoint),
                "--attack",
                "cw",
                "--eps",
                "0.1",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "does not take --eps" in capsys.readouterr().err
