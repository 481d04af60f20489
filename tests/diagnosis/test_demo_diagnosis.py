"""The diagnosis section of `underfire demo` runs alone and writes its numbers and figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from underfire.cli import main


@pytest.mark.slow
def test_demo_diagnosis_section(tmp_path: Path) -> None:
    assert main(["demo", "--sections", "diagnosis", "--epochs", "3", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["diagnosis"]
    assert set(results["layers"]) == {"max pooling", "average pooling"}
    for r in results["layers"].values():
        assert len(r["amplification"]) == 5 and r["adversarial_accuracy"] < r["clean_accuracy"]
    for name in ("diagnosis_layers.png", "diagnosis_interpretgan.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000
    assert "Diagnosis" in (tmp_path / "report.md").read_text()
