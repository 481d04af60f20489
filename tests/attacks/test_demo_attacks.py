"""The demo's attack section: numbers in ctx.results["attacks"], a table and figures in the report."""

from __future__ import annotations

import torch

from underfire.data import load_dataset
from underfire.experiments.demo_attacks import EPS, section
from underfire.experiments.demo_context import DemoContext
from underfire.report import Report


def test_attack_section(trained_digits, tmp_path):
    model, test = trained_digits
    ctx = DemoContext(
        tmp_path,
        torch.device("cpu"),
        0,
        "digits",
        load_dataset("digits", "train"),
        load_dataset("digits", "val"),
        test,
        model,
        Report("t"),
    )
    section(ctx)
    r = ctx.results["attacks"]
    assert r["eps"] == list(EPS) and set(r["accuracy"]) == {"FGSM", "TGSM (next class)", "PGD-10"}
    assert r["accuracy"]["FGSM"][0] == r["clean_accuracy"] > 0.9
    assert r["accuracy"]["PGD-10"][-1] <= r["accuracy"]["FGSM"][-1] < r["clean_accuracy"] - 0.3
    assert (tmp_path / "figures" / "attacks_accuracy.png").exists()
    assert (tmp_path / "figures" / "attacks_examples.png").exists()
    ctx.report.write(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Attacks" in md and "| PGD-10 |" in md
