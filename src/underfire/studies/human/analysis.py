"""``underfire study analyze``: who is excluded, and per model pair how often people chose
each model's image, with intervals, a sign test, agreement and answer times.

Writes ``STUDY/analysis/results.json``, ``report.md``, ``report.html`` and a figure of the
items people preferred least and most. :func:`claim5_from_analysis` turns the results into
the record of claim 5 of Ross & Doshi-Velez (2018) that ``reproduce ross2018 --study``
reports.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from underfire.core import io as _io
from underfire.raters.manifest import DATABASE, read_manifest
from underfire.raters.stats import (
    binomial_test,
    bootstrap_interval,
    fleiss_kappa,
    wilson_interval,
)
from underfire.raters.store import AnswerStore
from underfire.report import Report
from underfire.studies.claims import claim_record, round_floats, write_claims

__all__ = ["CLAIM5", "analyze", "analyze_answers", "claim5_from_analysis"]

CLAIM5 = (
    "JSMA examples against gradient-regularized models look like the target digit to people "
    "(as rated by people in a human-subject experiment)."
)


def _excluded(rows: list[dict[str, Any]], items: dict[str, dict[str, Any]]) -> list[str]:
    """Raters who chose the wrong image in any attention check they answered."""
    failed = {
        r["rater"]
        for r in rows
        if items[r["item"]]["kind"] == "check" and r["chosen"] != items[r["item"]]["correct"]
    }
    return sorted(failed)


def _pair_stats(
    answers: list[dict[str, Any]], items: dict[str, dict[str, Any]], reps: int, seed: int
) -> dict[str, Any]:
    n = len(answers)
    k = sum(1 for r in answers if r["chosen"] == "a")
    per_rater: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_item: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in answers:
        per_rater[r["rater"]][0] += r["chosen"] == "a"
        per_rater[r["rater"]][1] += 1
        per_item[r["item"]][0 if r["chosen"] == "a" else 1] += 1
    times = [r["ms"] for r in answers]
    boot = bootstrap_interval([(a, b) for a, b in per_rater.values()], reps, seed)
    quartiles = statistics.quantiles(times, n=4) if len(times) >= 2 else [None, None, None]
    return {
        "n_answers": n,
        "n_raters": len(per_rater),
        "n_items": len(per_item),
        "chose_a": k,
        "rate_a": k / n if n else None,
        "wilson_95": list(wilson_interval(k, n)) if n else None,
        "bootstrap_95": list(boot) if boot else None,
        "p_value": binomial_test(k, n),
        "fleiss_kappa": fleiss_kappa(list(per_item.values())),
        "ms_median": statistics.median(times) if times else None,
        "ms_quartiles": [quartiles[0], quartiles[2]],
    }


def analyze_answers(
    rows: list[dict[str, Any]], manifest: dict[str, Any], *, reps: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """The analysis of ``rows`` (answers as :meth:`AnswerStore.rows` gives them).

    ``rate_a`` of the pair "A vs B" is the share of answers that chose model A's image; the
    intervals, the sign test (H0: rate 0.5) and κ are over the raters kept after exclusion.
    """
    items = {it["id"]: it for it in manifest["items"]}
    unknown = sorted({r["item"] for r in rows} - set(items))
    if unknown:
        raise ValueError(f"answers name items the manifest does not have: {unknown[:5]}")
    excluded = _excluded(rows, items)
    kept = [r for r in rows if r["rater"] not in set(excluded)]
    pairs: dict[str, Any] = {}
    for a, b in itertools.combinations(manifest["models"], 2):
        answers = [
            r for r in kept if items[r["item"]].get("a") == a and items[r["item"]].get("b") == b
        ]
        pairs[f"{a} vs {b}"] = {"a": a, "b": b} | _pair_stats(answers, items, reps, seed)
    per_item: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in kept:
        if items[r["item"]]["kind"] == "pair":
            per_item[r["item"]][0] += r["chosen"] == "a"
            per_item[r["item"]][1] += 1
    ranked = sorted(
        (
            {k: items[i][k] for k in ("id", "source", "target", "a", "b", "image_a", "image_b")}
            | {"rate_a": c[0] / c[1], "n": c[1]}
            for i, c in per_item.items()
        ),
        key=lambda it: (it["rate_a"], it["id"]),
    )
    checks = [r for r in rows if items[r["item"]]["kind"] == "check"]
    return {
        "n_answers": len(rows),
        "n_raters": len({r["rater"] for r in rows}),
        "n_excluded": len(excluded),
        "excluded": excluded,
        "attention_checks": {
            "answers": len(checks),
            "correct": sum(1 for r in checks if r["chosen"] == items[r["item"]]["correct"]),
        },
        "models": list(manifest["models"]),
        "pairs": pairs,
        "items": ranked,
    }


def claim5_from_analysis(results: dict[str, Any], regularized: str = "gradreg") -> dict[str, Any]:
    """Claim 5 (its "people" half) decided on people's answers.

    Args:
        results: what :func:`analyze` returns (or ``STUDY/analysis/results.json``): needs
            ``models`` and ``pairs`` (each with ``a``, ``b``, ``rate_a``, ``wilson_95``,
            ``p_value``, ``n_answers``).
        regularized: the gradient-regularized model's name in the study.

    Held when, against every other model of the study, people chose the regularized model's
    image in more than half of the answers and the two-sided sign test rejects 0.5 at 5 %;
    not evaluated (None) when the study has no such model or a pair has no answers.
    """
    rule = (
        f"for every other model M: people chose {regularized}'s image over M's in more than "
        "half of the answers to 'which image looks more like a t?', two-sided sign test "
        "p < 0.05 (raters who failed an attention check excluded)"
    )
    pairs = [p for p in results.get("pairs", {}).values() if regularized in (p["a"], p["b"])]
    if regularized not in results.get("models", []) or not pairs:
        return claim_record("5", CLAIM5, rule, {}, None, f"the study has no {regularized!r} model")
    evidence: dict[str, Any] = {}
    held: bool | None = True
    for p in pairs:
        other = p["b"] if p["a"] == regularized else p["a"]
        if not p["n_answers"]:
            held = None
            evidence[f"{regularized} vs {other}"] = {"answers": 0}
            continue
        flip = p["a"] != regularized
        rate = 1 - p["rate_a"] if flip else p["rate_a"]
        lo, hi = p["wilson_95"]
        evidence[f"{regularized} vs {other}"] = {
            "answers": p["n_answers"],
            "raters": p["n_raters"],
            f"chose {regularized}": rate,
            "wilson_95": [1 - hi, 1 - lo] if flip else [lo, hi],
            "p_value": p["p_value"],
        }
        if held is not None:
            held = held and rate > 0.5 and p["p_value"] < 0.05
    note = f"decided on people's answers ({results.get('n_raters', 0)} raters, {results.get('n_excluded', 0)} excluded)"
    return claim_record("5", CLAIM5, rule, round_floats(evidence), held, note)


def _figure(study: Path, ranked: list[dict[str, Any]], path: Path, n: int = 3) -> bool:
    """Both images of the ``n`` items whose model A people chose least and most."""
    import matplotlib.pyplot as plt
    from PIL import Image

    chosen = ranked[:n] + ranked[-n:] if len(ranked) > 2 * n else ranked
    if not chosen:
        return False
    fig, axes = plt.subplots(len(chosen), 2, figsize=(4.2, 2.1 * len(chosen)), squeeze=False)
    for row, it in zip(axes, chosen, strict=True):
        for ax, side in zip(row, ("a", "b"), strict=True):
            ax.imshow(Image.open(study / it[f"image_{side}"]).convert("L"), cmap="gray")
            ax.set_title(
                f"{it[side]}: chosen {it['rate_a'] if side == 'a' else 1 - it['rate_a']:.0%}",
                fontsize=8,
            )
            ax.axis("off")
        row[0].text(
            -0.15,
            0.5,
            f"{it['id']}\ntarget {it['target']}",
            transform=row[0].transAxes,
            ha="right",
            va="center",
            fontsize=8,
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _report(study: Path, out: Path, results: dict[str, Any]) -> None:
    r = Report("Human-subject study: which image looks more like the target digit?")
    r.section("Raters and answers")
    r.table(
        [
            {
                "quantity": "answers stored (attention checks included)",
                "value": results["n_answers"],
            },
            {"quantity": "raters", "value": results["n_raters"]},
            {
                "quantity": "raters excluded (failed an attention check)",
                "value": results["n_excluded"],
            },
            {
                "quantity": "attention checks answered",
                "value": results["attention_checks"]["answers"],
            },
            {
                "quantity": "attention checks answered correctly",
                "value": results["attention_checks"]["correct"],
            },
        ]
    )
    r.section("Preference per model pair")
    r.text(
        "For the pair *A vs B*, *chose A* is the share of answers (kept raters) that picked A's "
        "image as looking more like the target. *Wilson* is its 95 % interval with answers "
        "independent; *bootstrap* resamples raters (wider when raters disagree). *p* is the "
        "exact two-sided sign test of 0.5. Fleiss' κ: agreement between raters on the same "
        "items beyond chance (1 = all agree, 0 = chance). Times: median answer time."
    )
    rows = []
    for name, p in results["pairs"].items():
        rows.append(
            {
                "pair": name,
                "answers": p["n_answers"],
                "raters": p["n_raters"],
                "chose A": p["rate_a"],
                "Wilson 95 %": _interval(p["wilson_95"]),
                "bootstrap 95 %": _interval(p["bootstrap_95"]),
                "p": p["p_value"],
                "κ": p["fleiss_kappa"],
                "median ms": p["ms_median"],
            }
        )
    r.table(rows)
    figure = out / "figures" / "least_and_most.png"
    if _figure(study, results["items"], figure):
        r.section("Items people preferred least and most")
        r.text(
            "Each row: one source image attacked toward the target with JSMA against two "
            "models; the share of answers choosing each image."
        )
        r.figure(figure, "items with the lowest and highest share choosing model A")
    r.section("Claim 5 of Ross & Doshi-Velez (2018)")
    write_claims(r, [claim5_from_analysis(results)], "claim")
    r.write(out)


def _interval(bounds: list[float] | None) -> str:
    return f"{bounds[0]:.3f}–{bounds[1]:.3f}" if bounds else "—"


def analyze(study: str | Path, *, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Analyze ``study``'s answers; writes ``STUDY/analysis/`` (results.json, report.html,
    report.md, figures) and returns the results."""
    study = Path(study)
    manifest = read_manifest(study)
    store = AnswerStore(study / DATABASE, readonly=True)
    try:
        rows = store.rows()
    finally:
        store.close()
    results = analyze_answers(rows, manifest, reps=reps, seed=seed)
    results["claim5"] = claim5_from_analysis(results)
    out = study / "analysis"
    _io.write_json(out / "results.json", results)
    _report(study, out, results)
    return results
