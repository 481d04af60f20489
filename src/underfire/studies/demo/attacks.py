"""Demo section: white-box attacks on the demo classifier (FGSM, TGSM and PGD vs ε).

Robust accuracy of the trained demo model under FGSM (Goodfellow et al. 2015), TGSM with
t = (y + 1) mod K (Ross & Doshi-Velez 2018) and L∞ PGD (Madry et al. 2018) for a sweep of ε,
computed with :func:`underfire.robustness.robust_accuracy` (FGSM's gradient sign is computed
once per batch for every ε), plus a figure of clean and adversarial examples.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch

from underfire.attacks import FGSM, PGD, TGSM, AttackWarning
from underfire.plotting import new_figure, save_figure
from underfire.report import Report
from underfire.robustness import robust_accuracy
from underfire.studies.base import StudyRun
from underfire.studies.demo.sections import cached_section, section_part

__all__ = ["EPS", "PARTS", "evaluation", "write"]

EPS = (0.0, 0.05, 0.1, 0.2, 0.3)
PGD_STEPS = 10
N = 200  # test images attacked (keeps the section to a few seconds on 2 cores)


def evaluation(run: StudyRun) -> dict[str, Any]:
    """FGSM / TGSM / PGD robust accuracy vs ε on the demo model, and two figures."""
    model = run.state["model"]
    data = run.state["test"].subset(N)
    x, y = data.x.to(run.device), data.y.to(run.device)
    attacks = {
        "FGSM": (FGSM(), None),
        "TGSM (next class)": (TGSM(), None),
        f"PGD-{PGD_STEPS}": (PGD(steps=PGD_STEPS, step_size=None, seed=run.config.seed), None),
    }
    results: dict[str, dict] = {}
    caught: list[str] = []
    for name, (attack, target) in attacks.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", AttackWarning)
            # each attack's own curve on every image (the demo shows and checks each one)
            r = robust_accuracy(
                model,
                attack,
                (x, y),
                eps=list(EPS),
                target=target,
                keep_examples=8,
                exhaustive=True,
            )
        caught += [f"{name}: {w.message}" for w in seen if issubclass(w.category, AttackWarning)]
        r["seconds"] = round(time.perf_counter() - t0, 3)
        results[name] = r
    examples = {name: r.pop("examples") for name, r in results.items()}
    if run.out is not None:
        _accuracy_figure(run, results)
        _examples_figure(run, examples)
    return {
        "n": len(data),
        "eps": list(EPS),
        "pgd_steps": PGD_STEPS,
        "accuracy": {name: r["accuracy"] for name, r in results.items()},
        "success_rate": {name: r["success_rate"] for name, r in results.items()},
        "seconds": {name: r["seconds"] for name, r in results.items()},
        "clean_accuracy": results["FGSM"]["clean_accuracy"],
        "warnings": caught,
    }


def _accuracy_figure(run: StudyRun, results: dict[str, dict]) -> None:
    fig = new_figure(5, 3.4)
    ax = fig.subplots()
    for name, r in results.items():
        ax.plot(EPS, r["accuracy"], marker="o", label=name)
    ax.set(
        xlabel="ε (L∞)", ylabel="accuracy", ylim=(-0.02, 1.02), title="white-box robust accuracy"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, run.figure_path("attacks_accuracy.png"))


def _examples_figure(run: StudyRun, examples: dict[str, dict]) -> None:
    model, classes = run.state["model"], run.state["test"].classes
    shown = [e for e in EPS if e > 0][-2:]
    rows = [("clean", examples["FGSM"]["x"])] + [
        (f"{name} ε={e:g}", examples[name]["x_adv"][EPS.index(e)])
        for name in ("FGSM", f"PGD-{PGD_STEPS}")
        for e in shown
    ]
    model_device = next(model.parameters()).device
    fig = new_figure(8, 1.2 * len(rows))
    axes = fig.subplots(len(rows), 8, squeeze=False)
    for r_i, (label, imgs) in enumerate(rows):
        with torch.no_grad():
            pred = model(imgs.to(model_device)).argmax(1).cpu()
        for c_i in range(8):
            ax = axes[r_i][c_i]
            ax.imshow(imgs[c_i].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(str(classes[int(pred[c_i])]), fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
            if c_i == 0:
                ax.set_ylabel(label, fontsize=7)
    save_figure(fig, run.figure_path("attacks_examples.png"))


def attacks(run: StudyRun) -> dict[str, Any]:
    run.log("section: attacks")
    return cached_section(run, "attacks", evaluation, uses=("model", "test"))


def write(report: Report, run: StudyRun) -> None:
    """The "Attacks" section of the report."""
    r = run.results["attacks"]
    eps, accuracy, pgd_steps = r["eps"], r["accuracy"], r["pgd_steps"]
    i = eps.index(0.1)
    pgd = accuracy[f"PGD-{pgd_steps}"]
    caught = r["warnings"]
    report.section("Attacks: robust accuracy under white-box attacks")
    report.text(
        f"The classifier is attacked white-box on {r['n']} test images. At ε = {eps[i]:g} (L∞, images in [0, 1]) "
        f"FGSM leaves {accuracy['FGSM'][i]:.1%} accuracy and {pgd_steps}-step PGD {pgd[i]:.1%} "
        f"(clean: {r['clean_accuracy']:.1%}). TGSM's success rate is the fraction classified as "
        "the next class. "
        + ("No soundness warning was raised." if not caught else "Warnings: " + "; ".join(caught))
    )
    report.table(
        [
            {
                "attack": name,
                **{f"ε={e:g}": round(a, 3) for e, a in zip(eps, acc, strict=False)},
                "seconds": r["seconds"][name],
            }
            for name, acc in accuracy.items()
        ]
    )
    report.figure(run.figure_path("attacks_accuracy.png"), "Accuracy vs ε for FGSM, TGSM and PGD")
    report.figure(
        run.figure_path("attacks_examples.png"),
        "Clean and adversarial test images, titled with the model's prediction",
    )


PARTS = (section_part("attacks", "attacks", attacks),)
