"""The qualitative claims of Ross & Doshi-Velez (AAAI 2018), each decided by a stated rule.

Every check reads only the computed ``results`` of a run and returns the claim, the rule, the
numbers that test it and whether it held (``None`` when the run lacks what the rule needs).
Nothing is hard-coded: the verdicts change with the numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from underfire.studies.claims import claim_record, round_floats
from underfire.studies.human.analysis import claim5_from_analysis

__all__ = ["CLAIMS", "evaluate_claims"]

#: Models without input-gradient regularization, the comparison group of claims 1, 2 and 4.
UNREGULARIZED = ("normal", "distilled", "adv-trained")
#: "At large ε" in claims 1: the grid points ≥ this.
LARGE_EPS = 0.3
#: Claim 3: "often" = at least this fraction of examples left unchanged by FGSM.
OFTEN = 0.25
#: Claim 3: "TGSM breaks them" = TGSM white-box accuracy at least this much below FGSM's.
BREAK_MARGIN = 0.1


def _claim(
    cid: str, text: str, rule: str, evidence: dict[str, Any], held: bool | None, note: str = ""
) -> dict[str, Any]:
    return claim_record(cid, text, rule, evidence, held, note)


_round = round_floats


def _eps_index(eps: list[float], value: float) -> int:
    return min(range(len(eps)), key=lambda i: abs(eps[i] - value))


def claim1(results: dict[str, Any]) -> dict[str, Any]:
    text = "Gradient-regularized models are the most robust to adversarial examples transferred from the other models at large ε."
    eps = results["config"]["eps"]
    large = [i for i, e in enumerate(eps) if e >= LARGE_EPS - 1e-9 and e > 0] or [len(eps) - 1]
    rule = (
        f"mean accuracy of each victim on FGSM and TGSM examples transferred from every other model, over "
        f"ε ∈ {{{', '.join(f'{eps[i]:g}' for i in large)}}}; holds if gradreg's is ≥ that of every "
        f"unregularized model ({', '.join(UNREGULARIZED)}) for both attacks"
    )
    evidence: dict[str, Any] = {}
    held = True
    for attack in ("fgsm", "tgsm"):
        acc = results[attack]["accuracy"]
        models = list(acc)
        per_victim = {}
        for v in models:
            vals = [acc[s][v][i] for s in models if s != v for i in large]
            per_victim[v] = statistics.fmean(vals) if vals else float("nan")
        evidence[attack] = per_victim
        rivals = [m for m in UNREGULARIZED if m in per_victim]
        if "gradreg" not in per_victim or not rivals:
            return _claim(
                "1", text, rule, _round(evidence), None, "needs gradreg and an unregularized model"
            )
        held &= all(per_victim["gradreg"] >= per_victim[m] for m in rivals)
    best = {a: max(evidence[a], key=evidence[a].get) for a in evidence}
    return _claim(
        "1",
        text,
        rule,
        _round(evidence),
        held,
        f"most robust victim: FGSM {best['fgsm']}, TGSM {best['tgsm']}",
    )


def claim2(results: dict[str, Any]) -> dict[str, Any]:
    text = (
        "Examples crafted against gradient-regularized models fool all other models about equally."
    )
    eps = results["config"]["eps"]
    pos = [i for i, e in enumerate(eps) if e > 0]
    rivals = [m for m in ("normal", "adv-trained") if m in results["fgsm"]["accuracy"]]
    rule = (
        "spread = standard deviation, over the other models, of their accuracy on a source's examples, "
        "averaged over ε > 0 and over FGSM and TGSM; holds if the gradreg source's spread is smaller than "
        f"that of the {' and '.join(rivals)} sources (distilled is left out: its FGSM examples are "
        "mostly the clean inputs, claim 3)"
    )
    spreads: dict[str, float] = {}
    means: dict[str, float] = {}
    for s in results["fgsm"]["accuracy"]:
        sd, mu = [], []
        for attack in ("fgsm", "tgsm"):
            acc = results[attack]["accuracy"][s]
            for i in pos:
                vals = [acc[v][i] for v in acc if v != s]
                if len(vals) >= 2:
                    sd.append(statistics.pstdev(vals))
                    mu.append(statistics.fmean(vals))
        if sd:
            spreads[s], means[s] = statistics.fmean(sd), statistics.fmean(mu)
    if "gradreg" not in spreads or not rivals:
        return _claim(
            "2",
            text,
            rule,
            _round({"spread": spreads}),
            None,
            "needs gradreg and normal/adv-trained sources",
        )
    held = all(spreads["gradreg"] < spreads[m] for m in rivals)
    return _claim("2", text, rule, _round({"spread": spreads, "mean_victim_accuracy": means}), held)


def claim3(results: dict[str, Any]) -> dict[str, Any]:
    text = "Distilled models' FGSM examples often equal the clean inputs (gradient underflow), yet TGSM breaks them."
    eps = results["config"]["eps"]
    i = _eps_index(eps, 0.3)
    rule = (
        f"at ε = {eps[i]:g}: the fraction of the distilled model's white-box FGSM examples identical to the clean input "
        f"is ≥ {OFTEN:g}, and its white-box TGSM accuracy is at least {BREAK_MARGIN:g} below its white-box FGSM accuracy"
    )
    if "distilled" not in results["fgsm"]["accuracy"] or eps[i] == 0:
        return _claim("3", text, rule, {}, None, "needs the distilled model and ε > 0")
    unchanged = results["fgsm"]["unchanged"]["distilled"][i]
    fgsm_wb = results["fgsm"]["accuracy"]["distilled"]["distilled"][i]
    tgsm_wb = results["tgsm"]["accuracy"]["distilled"]["distilled"][i]
    normal_unchanged = results["fgsm"]["unchanged"].get("normal", [math.nan] * len(eps))[i]
    evidence = {
        "eps": eps[i],
        "fgsm_unchanged_fraction": unchanged,
        "fgsm_unchanged_fraction_normal": normal_unchanged,
        "fgsm_whitebox_accuracy": fgsm_wb,
        "tgsm_whitebox_accuracy": tgsm_wb,
        "gradient_masking_warnings": results["fgsm"]["masked_warnings"].get("distilled", 0),
    }
    held = unchanged >= OFTEN and tgsm_wb <= fgsm_wb - BREAK_MARGIN
    return _claim("3", text, rule, _round(evidence), held)


def claim4(results: dict[str, Any]) -> dict[str, Any]:
    text = (
        "Gradient-regularized models have input gradients of similar magnitude for the FGSM and TGSM losses "
        "and give non-predicted classes higher probability."
    )
    stats = results.get("gradients", {})
    rule = (
        "(a) |log10(median ‖∇TGSM loss‖ / median ‖∇FGSM loss‖)| of gradreg is the smallest among gradreg and the "
        "unregularized models; (b) the median log-probability of the non-predicted classes is higher for gradreg "
        "than for every unregularized model"
    )
    if "gradreg" not in stats:
        return _claim("4", text, rule, {}, None, "needs gradient statistics")
    group = [m for m in ("gradreg", *UNREGULARIZED) if m in stats]
    log_ratio = {
        m: abs(
            math.log10(
                max(stats[m]["tgsm_norm_median"], 1e-300)
                / max(stats[m]["fgsm_norm_median"], 1e-300)
            )
        )
        for m in group
    }
    other = {m: stats[m]["log_prob_other_median"] for m in group}
    a = all(log_ratio["gradreg"] <= log_ratio[m] for m in group)
    b = all(other["gradreg"] > other[m] for m in group if m != "gradreg")
    evidence = {
        "abs_log10_norm_ratio": log_ratio,
        "median_log_prob_non_predicted": other,
        "a_held": a,
        "b_held": b,
    }
    return _claim("4", text, rule, _round(evidence), a and b)


def claim5(results: dict[str, Any]) -> dict[str, Any]:
    text = (
        "JSMA examples against gradient-regularized models look like the target digit to people; input gradients "
        "of regularized models are sparser and more interpretable."
    )
    rule = (
        "(a) proxy for 'looks like the target to people': the fraction of successful JSMA examples that independent "
        "judges (normally trained models of other architectures, never attacked; averaged) also classify as the "
        "target is higher for gradreg than for distilled; "
        "(b) sparsity: the mean Gini coefficient of |input gradient| (Hurley & Rickard 2009) is higher for gradreg "
        "than for the normal model"
    )
    jsma = results.get("jsma", {})
    sal = results.get("saliency", {})
    evidence: dict[str, Any] = {}
    a: bool | None = None
    human = results.get("human_study")
    if human is not None:
        people = claim5_from_analysis(human)
        rule = f"(a) decided by people: {people['rule']}; (b) " + rule.split("; (b) ", 1)[1]
        evidence["people"] = people["evidence"]
        a = people["held"]
    elif "gradreg" in jsma and "distilled" in jsma and "judge_agreement" in jsma["gradreg"]:
        evidence["judge_agreement"] = {
            m: jsma[m]["judge_agreement"] for m in ("gradreg", "distilled")
        }
        if "judge_agreement_per_judge" in jsma["gradreg"]:
            evidence["judge_agreement_per_judge"] = {
                m: jsma[m].get("judge_agreement_per_judge", {}) for m in ("gradreg", "distilled")
            }
        evidence["jsma_success_rate"] = {
            m: jsma[m]["success_rate"] for m in ("gradreg", "distilled")
        }
        evidence["jsma_mean_l0"] = {m: jsma[m]["mean_l0"] for m in ("gradreg", "distilled")}
        a = evidence["judge_agreement"]["gradreg"] > evidence["judge_agreement"]["distilled"]
    b: bool | None = None
    if "gradreg" in sal and "normal" in sal:
        evidence["gini"] = {m: sal[m]["gini"] for m in sal}
        b = sal["gradreg"]["gini"] > sal["normal"]["gini"]
    evidence |= {"a_held": a, "b_held": b}
    held = None if a is None or b is None else (a and b)
    if human is not None:
        note = f"(a) {people['note']}"
    else:
        note = "(a) decided by model judges standing in for people (no --study given)"
        if a is None and "gradreg" in jsma:
            note += "; part (a) needs the distilled model's JSMA examples to compare with"
        elif a is None:
            note += "; JSMA part not evaluated (JSMA skipped)"
    return _claim("5", text, rule, _round(evidence), held, note)


CLAIMS: list[Callable[[dict[str, Any]], dict[str, Any]]] = [claim1, claim2, claim3, claim4, claim5]


def evaluate_claims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """All claims of REFERENCE §1 decided on ``results`` (a claim whose inputs are missing gets held=None)."""
    out = []
    for check in CLAIMS:
        try:
            out.append(check(results))
        except KeyError as err:
            out.append(
                _claim(
                    check.__name__[-1],
                    check.__doc__ or check.__name__,
                    "",
                    {},
                    None,
                    f"missing result {err}",
                )
            )
    return out
