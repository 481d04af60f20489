"""AutoAttack in `underfire audit`: ``strength="standard"`` adds it, the report says it is the
standard and how to run it when it was not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from underfire.studies.audit import AuditConfig, audit

SMALL = {
    "interpreters": ("grad",),
    "eps": (0.2,),
    "n": 12,
    "n_maps": 4,
    "pgd_steps": 3,
    "surrogate": False,
}


def test_standard_strength_adds_autoattack_and_validates() -> None:
    assert AuditConfig().attacks == ("fgsm", "pgd", "ddn")  # the fast set stays the default
    assert AuditConfig(strength="standard").attacks == ("fgsm", "pgd", "ddn", "autoattack")
    assert AuditConfig(attacks=("autoattack",), strength="standard").attacks == ("autoattack",)
    with pytest.raises(ValueError, match="strength must be one of"):
        AuditConfig(strength="strong")


def test_audit_runs_autoattack_and_reports_it(digits_model, digits_splits, tmp_path: Path) -> None:
    r = audit(
        digits_model,
        digits_splits["test"],
        out=tmp_path,
        attacks=("fgsm",),
        strength="standard",
        **SMALL,
    )
    aa = r["attack-autoattack"]["accuracy"]
    fgsm = r["attack-fgsm"]["accuracy"]
    assert aa[0] == pytest.approx(r["clean"]["accuracy"])  # ε = 0
    assert aa[-1] <= fgsm[-1]  # the standard attack is at least as strong as FGSM
    assert "autoattack" in r["worst_case"]["attacks"]
    report = (tmp_path / "report.md").read_text()
    assert "AutoAttack (standard version, Croce & Hein 2020) ran" in report


def test_a_fast_audit_says_how_to_run_the_standard(
    digits_model, digits_splits, tmp_path: Path
) -> None:
    audit(digits_model, digits_splits["test"], out=tmp_path, attacks=("fgsm",), **SMALL)
    report = (tmp_path / "report.md").read_text()
    assert "`underfire audit --strength standard`" in report
