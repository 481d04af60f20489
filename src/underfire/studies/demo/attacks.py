"""Demo section: white-box attacks on the demo classifier (FGSM, TGSM and PGD vs ε).

Robust accuracy of the trained demo model under FGSM (Goodfellow et al. 2015), TGSM with
t = (y + 1) mod K (Ross & Doshi-Velez 2018) and L∞ PGD (Madry et al. 2018) for a sweep of ε,
computed with :func:`underfire.robustness.robust_accuracy` (FGSM's gradient sign is computed
once per batch for every ε), plus a figure of clean and adversarial examples.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING

import torch

from underfire.attacks import FGSM, PGD, TGSM, AttackWarning
from underfire.plotting import new_figure, save_figure
from underfire.robustness import robust_accuracy

if TYPE_CHECKING:
    from underfire.experiments.demo_context import DemoContext

__all__ = ["section"]

EPS = (0.0, 0.05, 0.1, 0.2, 0.3)
PGD_STEPS = 10
N = 200  # test images attacked (keeps the section to a few seconds on 2 cores)


def section(ctx: DemoContext) -> None:
    """FGSM / TGSM / PGD robust accuracy vs ε on the demo model, a table and two figures."""
    data = ctx.test.subset(N)
    x, y = data.x.to(ctx.device), data.y.to(ctx.device)
    attacks = {
        "FGSM": (FGSM(), None),
        "TGSM (next class)": (TGSM(), None),
        f"PGD-{PGD_STEPS}": (PGD(steps=PGD_STEPS, step_size=None, seed=ctx.seed), None),
    }
    results: dict[str, dict] = {}
    caught: list[str] = []
    for name, (attack, target) in attacks.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", AttackWarning)
            r = robust_accuracy(
                ctx.model, attack, (x, y), eps=list(EPS), target=target, keep_examples=8
            )
        caught += [f"{name}: {w.message}" for w in seen if issubclass(w.category, AttackWarning)]
        r["seconds"] = round(time.perf_counter() - t0, 3)
        results[name] = r
    examples = {name: r.pop("examples") for name, r in results.items()}
    ctx.results["attacks"] = {
        "n": len(data),
        "eps": list(EPS),
        "pgd_steps": PGD_STEPS,
        "accuracy": {name: r["accuracy"] for name, r in results.items()},
        "success_rate": {name: r["success_rate"] for name, r in results.items()},
        "seconds": {name: r["seconds"] for name, r in results.items()},
        "clean_accuracy": results["FGSM"]["clean_accuracy"],
        "warnings": caught,
    }

    fig = new_figure(5, 3.4)
    ax = fig.subplots()
    for name, r in results.items():
        ax.plot(EPS, r["accuracy"], marker="o", label=name)
    ax.set(
        xlabel="ε (L∞)", ylabel="accuracy", ylim=(-0.02, 1.02), title="white-box robust accuracy"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, ctx.figure_path("attacks_accuracy.png"))

    shown = [e for e in EPS if e > 0][-2:]
    rows = [("clean", examples["FGSM"]["x"])] + [
        (f"{name} ε={e:g}", examples[name]["x_adv"][EPS.index(e)])
        for name in ("FGSM", f"PGD-{PGD_STEPS}")
        for e in shown
    ]
    model_device = next(ctx.model.parameters()).device
    fig = new_figure(8, 1.2 * len(rows))
    axes = fig.subplots(len(rows), 8, squeeze=False)
    for r_i, (label, imgs) in enumerate(rows):
        with torch.no_grad():
            pred = ctx.model(imgs.to(model_device)).argmax(1).cpu()
        for c_i in range(8):
            ax = axes[r_i][c_i]
            ax.imshow(imgs[c_i].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(str(ctx.test.classes[int(pred[c_i])]), fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
            if c_i == 0:
                ax.set_ylabel(label, fontsize=7)
    save_figure(fig, ctx.figure_path("attacks_examples.png"))

    ctx.report.section("Attacks: robust accuracy under white-box attacks")
    i = EPS.index(0.1)
    pgd = results[f"PGD-{PGD_STEPS}"]["accuracy"]
    ctx.report.text(
        f"The classifier is attacked white-box on {len(data)} test images. At ε = {EPS[i]:g} (L∞, images in [0, 1]) "
        f"FGSM leaves {results['FGSM']['accuracy'][i]:.1%} accuracy and {PGD_STEPS}-step PGD {pgd[i]:.1%} "
        f"(clean: {results['FGSM']['clean_accuracy']:.1%}). TGSM's success rate is the fraction classified as "
        "the next class. "
        + ("No soundness warning was raised." if not caught else "Warnings: " + "; ".join(caught))
    )
    ctx.report.table(
        [
            {
                "attack": name,
                **{f"ε={e:g}": round(a, 3) for e, a in zip(EPS, r["accuracy"], strict=False)},
                "seconds": r["seconds"],
            }
            for name, r in results.items()
        ]
    )
    ctx.report.figure(
        ctx.figure_path("attacks_accuracy.png"), "Accuracy vs ε for FGSM, TGSM and PGD"
    )
    ctx.report.figure(
        ctx.figure_path("attacks_examples.png"),
        "Clean and adversarial test images, titled with the model's prediction",
    )
