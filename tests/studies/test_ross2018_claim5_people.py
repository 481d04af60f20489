"""Claim 5 of Ross & Doshi-Velez decided on people's answers when a human study is given,
on the model judges otherwise, and the claim says which."""

from __future__ import annotations

import json

import pytest

from underfire.studies.ross2018.claims import claim5


def _analysis(rate_gradreg: float, p_value: float) -> dict:
    return {
        "models": ["normal", "gradreg"],
        "n_raters": 12,
        "n_excluded": 1,
        "pairs": {
            "gradreg-normal": {
                "a": "gradreg",
                "b": "normal",
                "rate_a": rate_gradreg,
                "wilson_95": [rate_gradreg - 0.1, rate_gradreg + 0.1],
                "p_value": p_value,
                "n_answers": 120,
                "n_raters": 11,
            }
        },
    }


SPARSER = {"saliency": {"gradreg": {"gini": 0.8}, "normal": {"gini": 0.5}}}
JUDGES_AGAINST = {  # the judges alone would say (a) did not hold
    "jsma": {
        m: {"judge_agreement": v, "success_rate": 1.0, "mean_l0": 10.0}
        for m, v in (("gradreg", 0.1), ("distilled", 0.5))
    }
}


@pytest.mark.parametrize(("rate", "p", "held"), [(0.8, 0.001, True), (0.55, 0.3, False)])
def test_people_decide_part_a_when_a_study_is_given(rate, p, held) -> None:
    """Fails if the judges still decide (a) when people's answers are given."""
    c = claim5(SPARSER | JUDGES_AGAINST | {"human_study": _analysis(rate, p)})
    assert c["held"] is held
    assert "decided by people" in c["rule"] and "12 raters" in c["note"]
    assert json.dumps(c["evidence"]["people"])  # the per-pair numbers are the evidence


def test_the_judges_decide_without_a_study_and_the_note_says_so() -> None:
    c = claim5(SPARSER | JUDGES_AGAINST)
    assert c["held"] is False  # (a) by the judges: gradreg 0.1 < distilled 0.5
    assert "model judges" in c["note"] and "people" not in c["evidence"]
