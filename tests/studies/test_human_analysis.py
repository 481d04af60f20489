"""The analysis of a study's answers: exclusions, rates, intervals and p-values (checked
against scipy.stats), Fleiss' κ, the CSV export and claim 5 decided on people's answers."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from scipy import stats

from tests.browser import assert_report_renders
from tests.studies.human_fixtures import make_study
from underfire.cli import main
from underfire.raters.stats import binomial_test, bootstrap_interval, fleiss_kappa, wilson_interval
from underfire.raters.store import AnswerStore
from underfire.studies.human.analysis import analyze, analyze_answers, claim5_from_analysis


@pytest.mark.parametrize(("k", "n"), [(0, 1), (3, 10), (31, 40), (50, 100), (17, 23), (200, 200)])
def test_wilson_interval_and_sign_test_equal_scipy(k: int, n: int) -> None:
    ref = stats.binomtest(k, n, 0.5)
    ci = ref.proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert binomial_test(k, n) == pytest.approx(ref.pvalue, rel=1e-9)
    assert binomial_test(k, n, 0.3) == pytest.approx(stats.binomtest(k, n, 0.3).pvalue, rel=1e-9)


def test_fleiss_kappa_of_the_textbook_example() -> None:
    # Fleiss (1971) as tabulated in the usual worked example: 10 items, 14 raters, κ ≈ 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-4)
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    assert fleiss_kappa([[1, 0]]) is None  # one rating per item: undefined


def test_bootstrap_over_raters_widens_when_raters_disagree() -> None:
    agree = [(6, 10)] * 20
    split = [(10, 10)] * 12 + [(0, 10)] * 8  # the same pooled rate 0.6
    lo_a, hi_a = bootstrap_interval(agree, reps=500)
    lo_s, hi_s = bootstrap_interval(split, reps=500)
    assert lo_a == hi_a == pytest.approx(0.6)
    assert lo_s < 0.5 < 0.6 < hi_s


def _rows(
    manifest: dict, choices: dict[str, list[str]], check_answer: dict[str, str]
) -> list[dict]:
    """Answers of raters: per rater the model side chosen on each pair item in order."""
    pairs = [it for it in manifest["items"] if it["kind"] == "pair"]
    check = next(it for it in manifest["items"] if it["kind"] == "check")
    rows = []
    for rater, chosen in choices.items():
        for position, (item, side) in enumerate(zip(pairs, chosen, strict=True)):
            rows.append(
                {
                    "rater": rater,
                    "item": item["id"],
                    "position": position,
                    "side": "left",
                    "chosen": side,
                    "swapped": 0,
                    "ms": 1000 + position,
                    "received": 0.0,
                }
            )
        rows.append(
            {
                "rater": rater,
                "item": check["id"],
                "position": len(pairs),
                "side": "left",
                "chosen": check_answer.get(rater, "a"),
                "swapped": 0,
                "ms": 500,
                "received": 0.0,
            }
        )
    return rows  # fmt: skip


def test_analysis_of_a_known_preference(tmp_path: Path) -> None:
    manifest = make_study(tmp_path, models=("normal", "gradreg"), sources=10, checks=1)
    # six attentive raters choose gradreg (b) on 8 of 10 items; a seventh fails the check
    # and always chooses normal: excluded, it must not count
    choices = {f"r{i}": ["b"] * 8 + ["a"] * 2 for i in range(6)} | {"careless": ["a"] * 10}
    rows = _rows(manifest, choices, {"careless": "b"})
    results = analyze_answers(rows, manifest, reps=500)
    assert results["n_answers"] == 7 * 11
    assert (results["n_raters"], results["n_excluded"], results["excluded"]) == (7, 1, ["careless"])
    pair = results["pairs"]["normal vs gradreg"]
    assert (pair["n_answers"], pair["chose_a"], pair["n_raters"]) == (60, 12, 6)
    assert pair["rate_a"] == pytest.approx(0.2)
    ref = stats.binomtest(12, 60, 0.5)
    ci = ref.proportion_ci(method="wilson")
    assert pair["wilson_95"] == pytest.approx([ci.low, ci.high])
    assert pair["p_value"] == pytest.approx(ref.pvalue)
    assert pair["bootstrap_95"] == pytest.approx([0.2, 0.2])  # every rater answered the same
    assert pair["fleiss_kappa"] == pytest.approx(1.0)  # all six agree on every item
    assert pair["ms_median"] == pytest.approx(1004.5)
    claim = claim5_from_analysis(results)
    assert claim["id"] == "5" and claim["held"] is True
    # the same answers with the models' roles swapped: claim 5 does not hold
    assert claim5_from_analysis(results, regularized="normal")["held"] is False
    assert claim5_from_analysis(results, regularized="distilled")["held"] is None


def test_analyze_and_export_commands_write_results_report_and_csv(tmp_path: Path) -> None:
    manifest = make_study(tmp_path, models=("normal", "distilled", "gradreg"), sources=4, checks=1)
    store = AnswerStore(tmp_path / "answers.sqlite")
    for r in range(3):
        store.add_rater(f"p{r}", "t")
        for position, item in enumerate(manifest["items"]):
            # p2 chooses the noise in the attention check (image b): excluded
            side = "a" if item["kind"] == "check" and r < 2 else "b"
            added = store.add_answer(f"p{r}", item["id"], position, "left", side, False, 800)
            assert added == "stored"
    store.close()
    assert main(["study", "analyze", str(tmp_path), "--bootstrap", "200"]) == 0
    results = json.loads((tmp_path / "analysis" / "results.json").read_text())
    assert (results["n_answers"], results["n_raters"], results["n_excluded"]) == (39, 3, 1)
    assert results["pairs"]["distilled vs gradreg"]["n_answers"] == 8
    assert results["claim5"]["held"] is True  # gradreg (b) chosen every time, p = 2/2^8
    assert "Claim 5" in (tmp_path / "analysis" / "report.html").read_text()
    seen = assert_report_renders(tmp_path / "analysis" / "report.html", min_images=1)
    assert "Items people preferred least and most" in [s["title"] for s in seen["sections"]]
    assert main(["study", "export", str(tmp_path), "--csv", str(tmp_path / "a.csv")]) == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "a.csv").read_text())))
    assert len(table) == 39 and table[0]["rater"] == "p0"
    assert {r["chosen_model"] for r in table if r["kind"] == "pair"} <= {"distilled", "gradreg"}
    db = sqlite3.connect(tmp_path / "answers.sqlite")
    assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 39
    db.close()


def test_analyze_refuses_a_folder_that_is_not_a_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["study", "analyze", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a study folder" in err
    assert main(["study", "simulate", "--url", "http://192.0.2.1:8000"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="serve the study first"):
        make_study(tmp_path)
        analyze(tmp_path)
