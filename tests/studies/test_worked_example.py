"""The worked example of docs/developing.md ("Adding a study") runs as written: registered,
run by name, its cached part reused on a second run and recomputed for another ε."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from underfire.studies import STUDIES, run_study

DOC = Path(__file__).resolve().parents[2] / "docs" / "developing.md"


@pytest.fixture(scope="module")
def example_study():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Adding a study", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the worked example's code block is missing"
    namespace: dict = {}
    exec(compile(code.group(1), "docs/developing.md", "exec"), namespace)
    return namespace["STUDY"]


def test_the_documented_study_registers_runs_and_reuses_its_part(example_study, tmp_path):
    """Fails if the documented example no longer runs, or its cached part is not reused."""
    assert "fgsm-drop" in STUDIES and STUDIES["fgsm-drop"] is example_study
    first = run_study("fgsm-drop", out=tmp_path, epochs=2)
    assert 0 <= first["drop"]["attacked"] < first["drop"]["clean"] <= 1
    again = run_study("fgsm-drop", out=tmp_path, epochs=2)
    assert again["run"]["reused"] == ["drop"] and again["drop"] == first["drop"]
    other = run_study("fgsm-drop", out=tmp_path, epochs=2, eps=0.3, force=True)
    assert other["run"]["reused"] == [] and other["drop"]["attacked"] <= first["drop"]["attacked"]
    assert (tmp_path / "report.html").exists()
