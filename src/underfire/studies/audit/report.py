"""The audit's report: report.md and a self-contained report.html, one function per section,
each saying what its numbers mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from underfire.diagnosis import readable_rows
from underfire.report import Report
from underfire.studies.audit.config import CONSTANT_RTOL, MINIMAL, MINIMAL_SUCCESS, NORM_NAMES
from underfire.studies.audit.figures import map_figure, robust_figure
from underfire.studies.base import StudyRun

__all__ = ["write_report"]


def write_report(results: dict[str, Any], out: Path) -> Path:
    """report.md and a self-contained report.html in ``out``; returns the HTML's path."""
    figures = out / "figures"
    rep = Report("underfire audit")
    _header(rep, results)
    _robust_section(rep, results, figures)
    _minimal_section(rep, results)
    _soundness_section(rep, results)
    _maps_section(rep, results, figures)
    _diagnosis_section(rep, results)
    if results.get("notes"):
        rep.section("Notes")
        rep.text("\n".join(f"- {n}" for n in results["notes"]))
    return rep.write(out)[1]


def report(run: StudyRun) -> None:
    """The study's report hook."""
    assert run.out is not None
    write_report(run.results, run.out)


def _header(rep: Report, results: dict[str, Any]) -> None:
    clean = results["clean"]
    rep.text(
        f"Audited {clean['n']} samples in {results['seconds']:.0f} s"
        + (
            f" (this run; it resumed an earlier one, and all parts took "
            f"{results['part_seconds']:.0f} s of computing together). "
            if results.get("resumed")
            else ". "
        )
        + (
            f"Skipped for the time budget: {', '.join(results['skipped'])}."
            if results.get("skipped")
            else ""
        )
    )
    rep.section("Clean accuracy")
    rep.text(
        f"The model classifies **{clean['accuracy']:.1%}** of the audited samples correctly; "
        "every robust accuracy below is bounded by this number."
    )


def _robust_section(rep: Report, results: dict[str, Any], figures: Path) -> None:
    eps = results["config"]["eps"]
    clean = results["clean"]
    rep.section("Robust accuracy under attack (white-box)")
    rows, curves = [], {}
    for name in results["config"]["attacks"]:
        part = results.get(f"attack-{name}")
        if part is None or name in MINIMAL:
            continue
        label = name
        if part.get("cumulative"):  # the open mode: this attack and those before it
            label = " + ".join([*part["cumulative"], name])
        curves[label] = part["accuracy"]
        rows.append(
            {"attack": label}
            | {f"ε={e:.3g}": a for e, a in zip(eps, part["accuracy"], strict=True)}
        )
    worst = results["worst_case"]
    rows.append(
        {"attack": "worst case (per sample)"}
        | {f"ε={e:.3g}": a for e, a in zip(eps, worst["accuracy"], strict=True)}
    )
    curves["worst case"] = worst["accuracy"]
    transfer = results.get("transfer")
    if transfer:
        for name, part in transfer["attacks"].items():
            label = f"{name} (transfer)"
            if part.get("cumulative"):  # the open mode: after the white-box attacks
                label = " + ".join([*part["cumulative"], label])
            curves[label] = part["accuracy"]
            rows.append(
                {"attack": label}
                | {f"ε={e:.3g}": a for e, a in zip(eps, part["accuracy"], strict=True)}
            )
    i_mid = len(eps) // 2
    rep.text(
        f"At ε = {eps[i_mid]:.3g} (L∞, inputs in [0, 1]) an attacker who knows the model keeps "
        f"**{worst['accuracy'][i_mid]:.1%}** of the samples correct in the worst case over "
        f"{', '.join(worst['attacks'])}: that is the accuracy to expect under attack, not the clean one."
    )
    if worst.get("mode") == "open":
        rep.text(
            "Run in the open mode (the default): each attack ran only on the samples still "
            "robust (fooled samples left the batch, ε ascending, the bounded attacks cheapest "
            'first), so a row "a + b" is the accuracy under b and every attack before it, '
            "not b's own. The worst case is exact (never higher than attacking everything); "
            "`--exhaustive` gives every attack's own curve on every sample."
        )
    else:
        rep.text("Run exhaustively: every attack on every sample at every ε.")
    rep.table(rows)
    rep.figure(
        robust_figure(eps, curves, figures / "robust_accuracy.png"),
        "Accuracy vs ε; the wide grey line is the per-sample worst case (an attack lying on "
        "it is the worst case there); dashed lines are transferred attacks",
    )
    _autoattack_note(rep, results)
    if transfer:
        on = transfer.get("agreement_on", "its training images")
        rep.text(
            f"Transferred rows craft the examples on a surrogate ({transfer['surrogate']}, "
            f"trained on {transfer.get('trained_on', clean['n'])} of the audited images; it "
            f"agrees with the model on {transfer['agreement']:.1%} of {on}) and evaluate them "
            "on the model."
        )
        if worst.get("mode") == "open":
            rep.text(
                "In the open mode they attack only the samples that the white-box attacks left "
                "robust, so a transferred row is the accuracy under the white-box attacks and "
                "the transfers so far, and what it breaks is what the white-box attacks missed "
                "(a sign of gradient masking; see the soundness checks). `--exhaustive` gives "
                "each transfer's own curve: what an attacker without the weights achieves."
            )
        else:
            rep.text("That is what an attacker without the weights achieves.")


def _autoattack_note(rep: Report, results: dict[str, Any]) -> None:
    """AutoAttack is the standard a robustness number is judged by: say whether it ran."""
    part = results.get("attack-autoattack")
    if part is None:
        rep.text(
            "AutoAttack (Croce & Hein 2020: APGD-CE, APGD-T, FAB-T and the gradient-free "
            "Square attack, each on the points still robust) is the standard robustness "
            "evaluation, and it was not run here: these attacks give an upper bound on robust "
            "accuracy that AutoAttack may lower, notably under gradient masking. Run it with "
            "`underfire audit --strength standard` (or `--attacks fgsm,pgd,ddn,autoattack`)."
        )
        return
    mid = len(part["accuracy"]) // 2
    rep.text(
        f"AutoAttack (standard version, Croce & Hein 2020) ran: {part['accuracy'][mid]:.1%} "
        "robust at the middle ε. It is the standard evaluation robustness results are "
        "compared by (RobustBench); its Square attack needs no gradient, so gradient "
        "masking does not hide the model's weakness from it."
    )


def _minimal_section(rep: Report, results: dict[str, Any]) -> None:
    clean = results["clean"]
    minimal = [n for n in results["config"]["attacks"] if n in MINIMAL and f"attack-{n}" in results]
    if minimal:
        rep.section("Minimal perturbations")
        rep.text(
            "Attacks that search for the smallest change that flips the prediction; smaller "
            "median norms mean a more fragile model. Success and the medians are over the "
            "correctly classified images only (a misclassified image needs no perturbation), "
            "the medians over those the attack flipped."
        )
        rep.table(
            [
                {
                    "attack": n,
                    "images": results[f"attack-{n}"].get("n_right", clean["n"]),
                    "success": results[f"attack-{n}"]["success_rate"],
                    **{
                        f"median {NORM_NAMES[k]}": v
                        for k, v in results[f"attack-{n}"]["median"].items()
                    },
                }
                for n in minimal
            ]
        )
        weak = [n for n in minimal if results[f"attack-{n}"]["success_rate"] < MINIMAL_SUCCESS]
        for n in weak:
            rate = results[f"attack-{n}"]["success_rate"]
            rep.text(
                f"**Warning:** {n} flipped only {rate:.0%} of the correctly classified images. "
                "A minimal-perturbation attack should flip nearly all of them; its medians "
                "describe only the easiest images, and a low rate says the attack's settings "
                "are too weak here, not that the model is hard to fool (compare the bounded "
                "attacks above)."
            )


def _soundness_section(rep: Report, results: dict[str, Any]) -> None:
    rep.section("Gradient-masking checks")
    checks = results["soundness"]
    failed = [c for c in checks if not c["passed"]]
    rep.text(
        "All checks passed: the robust accuracies above are not inflated by masked gradients."
        if not failed
        else f"{len(failed)} of {len(checks)} checks failed: robust accuracy may be overestimated "
        "(gradient masking); trust the worst case and the transfer rows over single attacks."
    )
    rep.table(
        [
            {
                "check": c["check"],
                "verdict": "pass" if c["passed"] else "FAIL",
                "evidence": c["evidence"],
            }
            for c in checks
        ]
    )


def _maps_section(rep: Report, results: dict[str, Any], figures: Path) -> None:
    maps = [n for n in results["config"]["interpreters"] if f"maps-{n}" in results]
    if maps:
        rep.section("Explanations under attack")
        first = results[f"maps-{maps[0]}"]
        shown = len(first["x"])
        rep.text(
            f"Maps of {first['n']} images (the figures show the first {shown}), benign vs "
            f"attacked toward the class (y + 1) mod K at ε = {first['eps']:.3g}; L1 and IoU are "
            "averaged over the images whose attack reached that class. High L1 / "
            "low IoU under PGD means the explanation changes visibly when the prediction is "
            "attacked; a small change under ADV² means an attacker can change the prediction "
            "while keeping the explanation looking benign."
        )
        rows = []
        for n in maps:
            part = results[f"maps-{n}"]
            for label, a in part["attacks"].items():
                rows.append(
                    {
                        "interpreter": n,
                        "attack": label,
                        "reached target": a["reached_target"],
                        "images compared": a["n_used"],
                        "map L1": "n/a" if a["l1"] is None else a["l1"],
                        "top-k IoU": "n/a" if a["iou"] is None else a["iou"],
                        "constant maps (benign / attacked)": (
                            f"{part['constant_maps']} / {a.get('constant_maps', 0)}"
                        ),
                    }
                )
        rep.table(rows)
        for n in maps:
            layer = results[f"maps-{n}"].get("target_layer")
            if layer:
                h, w = layer["size"]
                rep.text(
                    f"{n} reads the feature map of `{layer['name']}` ({h}×{w} at this input "
                    f"size; {layer['how']})"
                    + (
                        ": a 1×1 map is constant, so these maps carry no spatial information."
                        if h * w == 1
                        else "."
                    )
                )
        constant = []
        for n in maps:
            part = results[f"maps-{n}"]
            attacked = sum(a.get("constant_maps", 0) for a in part["attacks"].values())
            if part["constant_maps"] or attacked:
                constant.append(f"{n} ({part['constant_maps']} benign, {attacked} attacked)")
        if constant:
            rep.text(
                f"Constant maps (max − min ≤ {CONSTANT_RTOL:g} · max |map|) carry no "
                "information: they are "
                "shown blank and left out of L1/IoU, with their image pair: "
                + ", ".join(constant)
                + "."
            )
        for n in maps:
            layer = results[f"maps-{n}"].get("target_layer")
            where = (
                f" (layer {layer['name']}, {layer['size'][0]}×{layer['size'][1]})" if layer else ""
            )
            rep.figure(
                map_figure(results[f"maps-{n}"], n, figures),
                f"{n}{where}: images, their benign maps, and the maps of attacked images "
                "(titles: pred (true); red: wrong)",
            )


def _diagnosis_section(rep: Report, results: dict[str, Any]) -> None:
    diag = results.get("diagnosis")
    if diag and "table" in diag:
        rep.section("Per-layer diagnosis")
        table, dropped = readable_rows(diag["table"])
        rep.text(
            f"How a PGD perturbation (ε = {diag['eps']:.3g}, {diag['n']} images) grows through "
            "the layers. Amplification is the relative change of a layer's features under the "
            "attack, growth its ratio to the previous layer's. The top-10 % columns patch only "
            "the 10 % of the layer's units that the attack changed most: restored is the share "
            "of the correct-class probability that comes back when they get their clean values, "
            "broken the share lost when only they get the attacked values. Information loss "
            "(0 to 1) is the share of the image's variance that a linear decoder cannot recover "
            "from the layer's features. Layers "
            "with high amplification and high information loss are where the model is most "
            "vulnerable."
        )
        if dropped:
            rep.text(
                "Patching a whole layer restores and breaks the prediction completely at every "
                "layer here (1.00), as it must at a layer every path goes through (a network "
                "without branches), so those two columns are left out."
            )
        rep.table(table)
    elif diag:
        run_notes = results.setdefault("notes", [])
        if diag["skipped"] not in run_notes:
            run_notes.append(diag["skipped"])
