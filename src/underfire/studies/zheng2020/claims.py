"""The claims of the Zheng et al. (2020) reproduction: statistics across seeds and the
computed verdict "is average pooling more robust than max pooling here?".

Pure computation on numbers: no models, no plotting, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "compare_variants",
    "headline",
    "robust_score",
    "seed_stats",
    "verdict",
]


def robust_score(acc: Sequence[float], eps: Sequence[float]) -> float:
    """Mean accuracy over the ε > 0 of the grid: one number per model and attack."""
    vals = [a for a, e in zip(acc, eps, strict=True) if e > 0]
    if not vals:
        raise ValueError("the ε grid needs at least one ε > 0")
    return sum(vals) / len(vals)


def seed_stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one seed), min and max over seeds."""
    v = [float(a) for a in values]
    if not v:
        raise ValueError("need at least one value")
    mean = sum(v) / len(v)
    std = math.sqrt(sum((a - mean) ** 2 for a in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(v), "max": max(v), "n": len(v)}


def verdict(avg: Sequence[float], mx: Sequence[float]) -> dict[str, Any]:
    """Decide whether average pooling beats max pooling beyond the seed spread.

    Rule: the difference *exceeds the seed spread* when the two ranges over seeds do not
    overlap, i.e. every average-pooling seed scores above every max-pooling seed (``"avg"``),
    or every max-pooling seed above every average-pooling seed (``"max"``); otherwise
    ``"within spread"``. With one seed per variant the rule cannot be applied
    (``"one seed"``). The paired per-seed differences (both variants of a seed share the
    initialization and batch order) and how many favour average pooling are reported too.

    Args:
        avg: the score of each average-pooling model, in seed order.
        mx: the score of each max-pooling model, in the same seed order.
    """
    if len(avg) != len(mx) or not avg:
        raise ValueError(f"need one score per seed for both variants, got {len(avg)} and {len(mx)}")
    a, m = seed_stats(avg), seed_stats(mx)
    paired = [float(p - q) for p, q in zip(avg, mx, strict=True)]
    if len(avg) < 2:
        winner = "one seed"
    elif a["min"] > m["max"]:
        winner = "avg"
    elif m["min"] > a["max"]:
        winner = "max"
    else:
        winner = "within spread"
    return {
        "avg": a,
        "max": m,
        "difference": a["mean"] - m["mean"],
        "paired_differences": paired,
        "seeds_favouring_avg": sum(d > 0 for d in paired),
        "winner": winner,
    }


def compare_variants(
    per_model: dict[str, dict[str, Any]], seeds: Sequence[int], eps: Sequence[float]
) -> dict[str, Any]:
    """Statistics over seeds and verdicts for clean accuracy and for FGSM and PGD robustness.

    Args:
        per_model: ``{"max-seed0": {"clean": acc, "fgsm": [...], "pgd": [...]}, ...}``.
        seeds: the seeds, in order.
        eps: the ε grid of the curves.

    Returns:
        ``{"clean": verdict, "fgsm": verdict, "pgd": verdict, "curves": {attack: {pooling:
        {"mean": [...], "std": [...], "min": [...], "max": [...]}}}, "per_eps": {attack:
        [verdict per ε]}, "headline": {...}}``; the FGSM/PGD verdicts use
        :func:`robust_score` (mean accuracy over ε > 0).
    """

    def values(pool: str, fn: Any) -> list[float]:
        return [fn(per_model[f"{pool}-seed{s}"]) for s in seeds]

    out: dict[str, Any] = {
        "clean": verdict(values("avg", lambda r: r["clean"]), values("max", lambda r: r["clean"]))
    }
    out["curves"], out["per_eps"] = {}, {}
    for attack in ("fgsm", "pgd"):
        out[attack] = verdict(
            values("avg", lambda r, a=attack: robust_score(r[a], eps)),
            values("max", lambda r, a=attack: robust_score(r[a], eps)),
        )
        out["curves"][attack] = {}
        for pool in ("max", "avg"):
            stats = [
                seed_stats(values(pool, lambda r, a=attack, i=i: r[a][i])) for i in range(len(eps))
            ]
            out["curves"][attack][pool] = {
                k: [s[k] for s in stats] for k in ("mean", "std", "min", "max")
            }
        out["per_eps"][attack] = [
            verdict(
                values("avg", lambda r, a=attack, i=i: r[a][i]),
                values("max", lambda r, a=attack, i=i: r[a][i]),
            )["winner"]
            for i in range(len(eps))
        ]
    out["headline"] = headline(out["fgsm"]["winner"], out["pgd"]["winner"])
    return out


def headline(fgsm: str, pgd: str) -> dict[str, Any]:
    """One sentence-level outcome from the two robustness verdicts.

    ``"avg"`` when average pooling wins beyond the seed spread under both FGSM and PGD,
    ``"max"`` when max pooling does, ``"mixed"`` when each wins one attack,
    ``"partial-avg"``/``"partial-max"`` when one variant wins one attack and the other attack
    is within the spread, and ``"no difference"`` when neither attack shows a difference
    beyond the spread. The paper's claim (REFERENCE §2) holds here only for ``"avg"``.
    """
    wins = {fgsm, pgd} - {"within spread", "one seed"}
    if fgsm == pgd and fgsm in ("avg", "max"):
        outcome = fgsm
    elif wins == {"avg", "max"}:
        outcome = "mixed"
    elif wins == {"avg"}:
        outcome = "partial-avg"
    elif wins == {"max"}:
        outcome = "partial-max"
    else:
        outcome = "no difference"
    return {"outcome": outcome, "fgsm": fgsm, "pgd": pgd, "paper_claim_held": outcome == "avg"}
