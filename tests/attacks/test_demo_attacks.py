"""The demo's attack section: its numbers in results["attacks"], a table and figures in the report."""

from __future__ import annotations

import torch

from underfire.report import Report
from underfire.studies import StudyRun
from underfire.studies.demo import STUDY, configure
from underfire.studies.demo.attacks import EPS, evaluation, write


def test_attack_section(trained_digits, tmp_path):
    model, test = trained_digits
    run = StudyRun(
        STUDY,
        configure(sections=["attacks"]),
        tmp_path,
        torch.device("cpu"),
        state={"model": model, "test": test},
    )
    r = run.results["attacks"] = evaluation(run)
    assert r["eps"] == list(EPS) and set(r["accuracy"]) == {"FGSM", "TGSM (next class)", "PGD-10"}
    assert r["accuracy"]["FGSM"][0] == r["clean_accuracy"] > 0.9
    assert r["accuracy"]["PGD-10"][-1] <= r["accuracy"]["FGSM"][-1] < r["clean_accuracy"] - 0.3
    assert (tmp_path / "figures" / "attacks_accuracy.png").exists()
    assert (tmp_path / "figures" / "attacks_examples.png").exists()
    report = Report("t")
    write(report, run)
    report.write(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Attacks" in md and "| PGD-10 |" in md
