"""ADV² in the demo (a report section) and on the command line (`underfire attack --attack adv2`)."""

from __future__ import annotations

import json

import pytest
import torch

from underfire.checkpoint import save_checkpoint
from underfire.cli import main
from underfire.report import Report
from underfire.studies import StudyRun
from underfire.studies.demo import STUDY, configure


@pytest.mark.slow
def test_demo_section(trained_digits, tmp_path):
    from underfire.studies.demo.adv2 import evaluation, write

    model, test = trained_digits
    run = StudyRun(
        STUDY,
        configure(sections=["adv2"]),
        tmp_path,
        torch.device("cpu"),
        state={"model": model, "test": test},
    )
    run.results["adv2"] = evaluation(run)
    rows = {(r["interpreter"], r["attack"]): r for r in run.results["adv2"]["rows"]}
    assert set(rows) == {(i, a) for i in ("grad", "gradcam") for a in ("PGD", "ADV²")}
    for name in ("grad", "gradcam"):
        pgd, adv = rows[(name, "PGD")], rows[(name, "ADV²")]
        assert adv["success"] >= 0.8 and pgd["success"] >= 0.8
        assert adv["map_l1"] < pgd["map_l1"] and adv["map_iou"] > pgd["map_iou"]
    assert (tmp_path / "figures" / "adv2.png").stat().st_size > 0
    report = Report("t")
    write(report, run)
    report.write(tmp_path)
    assert "ADV²" in (tmp_path / "report.md").read_text()


@pytest.fixture(scope="module")
def checkpoint(trained_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, trained_digits[0], meta={"dataset": "digits", "data_seed": 0})
    return path


def _argv(checkpoint, out, *extra):
    return [
        "attack",
        "--checkpoint",
        str(checkpoint),
        "--attack",
        "adv2",
        "--eps",
        "0.3",
        "--step-size",
        "0.02",
        "--warm-steps",
        "5",
        "--steps",
        "10",
        "--n",
        "6",
        "--save",
        "4",
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]


def test_cli_adv2(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(checkpoint, out, "--interpreter", "grad", "--target", "next")) == 0
    printed = capsys.readouterr().out
    assert "success_rate" in printed and "l1" in printed and "iou" in printed
    result = json.loads((out / "results.json").read_text())
    assert result["n"] == 6 and result["attack"]["name"] == "adv2"
    assert result["attack"]["interpreter"] == "grad" and result["attack"]["preset"] == "small"
    for key in ("success", "confidence", "l1", "iou", "target"):
        assert len(result["per_sample"][key]) == 6
    assert 0 <= result["l1"] <= 1 and 0 <= result["iou"] <= 1
    saved = torch.load(out / "adversarial.pt")
    assert saved["x_adv"].shape == (4, 1, 8, 8) and saved["adv_map"].shape == (4, 1, 8, 8)
    assert (saved["x_adv"] - saved["x"]).abs().max() <= 0.3 + 1e-6
    assert (out / "attack.png").stat().st_size > 0


def test_cli_adv2_errors(checkpoint, tmp_path, capsys):
    assert main(_argv(checkpoint, tmp_path / "a", "--target", "next")) != 0
    assert "--interpreter" in capsys.readouterr().err
    assert main(_argv(checkpoint, tmp_path / "b", "--interpreter", "grad")) != 0
    assert "targeted" in capsys.readouterr().err
    assert main(_argv(checkpoint, tmp_path / "c", "--interpreter", "rts", "--target", "next")) != 0
    assert "--rts-checkpoint" in capsys.readouterr().err
    assert main(_argv(checkpoint, tmp_path / "d", "--interpreter", "nope", "--target", "next")) != 0
    assert "nope" in capsys.readouterr().err


def test_cli_adv2_protects_another_runs_results(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(checkpoint, out, "--interpreter", "grad", "--target", "next")) == 0
    first = (out / "results.json").read_text()
    capsys.readouterr()
    other = _argv(checkpoint, out, "--interpreter", "grad", "--target", "random")
    assert main(other) != 0
    assert "--force" in capsys.readouterr().err
    assert (out / "results.json").read_text() == first
    assert main([*other, "--force"]) == 0
    assert json.loads((out / "results.json").read_text())["target"] == "random"
