"""Gradient-masking soundness checks (Carlini et al. 2019, "On Evaluating Adversarial
Robustness"), and the audit's closing part that gathers them with the run's bookkeeping."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from underfire.studies.audit.config import MINIMAL
from underfire.studies.audit.context import eps_of
from underfire.studies.base import StudyRun

__all__ = ["run_finish", "soundness"]


def soundness(run: StudyRun) -> list[dict[str, Any]]:
    """Verdicts of the gradient-masking checks, each with its evidence."""
    checks: list[dict[str, Any]] = []
    eps = eps_of(run)
    res = run.results
    bounded = [a for a in run.config.attacks if a not in MINIMAL and f"attack-{a}" in res]
    if not run.config.exhaustive:
        # the open mode's curves are cumulative, monotone in ε and below the cheaper attacks'
        # by construction: these checks compare attacks' own curves and need --exhaustive
        note = (
            "the checks that compare attacks' own curves (accuracy monotone in ε, PGD not "
            "weaker than FGSM) were not run: the open mode's curves are cumulative; rerun "
            "with exhaustive=True (--exhaustive) for them"
        )
        notes = res.setdefault("notes", [])
        if note not in notes:
            notes.append(note)
    for a in bounded if run.config.exhaustive else []:
        acc = res[f"attack-{a}"]["accuracy"]
        rises = [
            f"{eps[i]:g}→{eps[i + 1]:g}" for i in range(len(acc) - 1) if acc[i + 1] > acc[i] + 0.02
        ]
        checks.append(
            {
                "check": f"{a}: accuracy does not rise with ε",
                "passed": not rises,
                "evidence": "rises at " + ", ".join(rises) if rises else "monotone within 0.02",
            }
        )
    if run.config.exhaustive and "attack-fgsm" in res and "attack-pgd" in res:
        f, p = res["attack-fgsm"]["accuracy"], res["attack-pgd"]["accuracy"]
        weaker = [f"ε={e:g}" for e, fa, pa in zip(eps, f, p, strict=True) if pa > fa + 0.02]
        checks.append(
            {
                "check": "iterative PGD is not weaker than single-step FGSM",
                "passed": not weaker,
                "evidence": "PGD weaker at " + ", ".join(weaker)
                if weaker
                else "PGD ≤ FGSM at every ε",
            }
        )
    if "transfer" in res and not run.config.exhaustive:
        checks += _transfer_breaks(res["transfer"]["attacks"], eps, res["clean"]["n"])
    elif "transfer" in res:
        for a in bounded:
            if a not in res["transfer"]["attacks"]:
                continue
            t, wb = res["transfer"]["attacks"][a]["accuracy"], res[f"attack-{a}"]["accuracy"]
            weaker = [f"ε={e:g}" for e, ta, wa in zip(eps, t, wb, strict=True) if wa > ta + 0.02]
            checks.append(
                {
                    "check": f"{a}: white-box is not weaker than transfer from a surrogate",
                    "passed": not weaker,
                    "evidence": "white-box weaker at " + ", ".join(weaker)
                    if weaker
                    else "white-box ≤ transfer",
                }
            )
    if "unbounded" in res:
        u = res["unbounded"]
        checks.append(
            {
                "check": "an unbounded attack (PGD, ε = 1) drives accuracy to ~0",
                "passed": u["accuracy"] <= 0.05,
                "evidence": f"accuracy {u['accuracy']:.3f} on {u['n']} images",
            }
        )
    if "gradients" in res:
        g = res["gradients"]
        checks.append(
            {
                "check": "input gradients are finite and non-zero",
                "passed": g["zero"] == 0 and g["nonfinite"] == 0,
                "evidence": f"{g['zero']} zero and {g['nonfinite']} non-finite of {g['n']}",
            }
        )
    return checks


def _transfer_breaks(
    transfer: dict[str, dict[str, Any]], eps: list[float], n: int
) -> list[dict[str, Any]]:
    """The open mode's transfer check: a transferred attack ran only on the samples that the
    white-box attacks left robust, so whatever it broke, they missed. More than 2% of the
    samples at an ε is the sign of masked gradients (the same tolerance as the exhaustive
    comparison of curves, and stricter: it counts samples, not a difference of means)."""
    checks = []
    for a, t in transfer.items():
        counts = [(e, k) for e, k in zip(eps, t["broke"], strict=True) if k]
        over = [f"ε={e:g} ({k} of {n})" for e, k in counts if k > 0.02 * n]
        if over:
            evidence = (
                "transfer broke more than 2% of the samples among those the white-box "
                "attacks left robust, at " + ", ".join(over)
            )
        elif counts:
            evidence = (
                "transfer broke samples the white-box attacks left robust: "
                + ", ".join(f"{k} at ε={e:g}" for e, k in counts)
                + f" (at most 2% of {n} per ε)"
            )
        else:
            evidence = "transfer broke none of the samples the white-box attacks left robust"
        checks.append(
            {
                "check": f"{a}: white-box is not weaker than transfer from a surrogate",
                "passed": not over,
                "evidence": evidence,
            }
        )
    return checks


def run_finish(run: StudyRun) -> None:
    """The checks' verdicts, the config with its ε list, and the run's time."""
    res = run.results
    res["soundness"] = soundness(run)
    res["config"] = asdict(run.config) | {"eps": eps_of(run)}
    res["seconds"] = round(run.elapsed(), 1)
    res["part_seconds"] = round(
        sum(v["seconds"] for v in res.values() if isinstance(v, dict) and "seconds" in v), 1
    )
    if run.reused:
        res["resumed"] = list(run.reused)
    if run.skipped:
        res["skipped"] = list(run.skipped)
