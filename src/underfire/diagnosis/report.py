"""A per-layer diagnosis end to end: attack, measure, and write results.json, figures and the
report (what ``underfire diagnose`` prints and writes; callable from Python alike).

>>> run = diagnose(model, x, y, PGD(eps=0.1), seed=0)
>>> payload = write_diagnosis(run, out, title="m.pt under pgd ε=0.1", label="pgd ε=0.1",
...                           about={"checkpoint": "m.pt", "dataset": "digits"})
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.core import io as _io
from underfire.diagnosis.interpretgan import InterpretGAN, evaluate_interpretgan
from underfire.diagnosis.layer_vulnerability import LayerVulnerability, layer_vulnerability
from underfire.report import Report

__all__ = ["Diagnosis", "diagnose", "write_diagnosis"]


@dataclass
class Diagnosis:
    """An attack's effect measured layer by layer on ``x`` (see :func:`diagnose`)."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    x_adv: torch.Tensor
    #: a short description of the attack (its repr)
    attack: str
    result: LayerVulnerability
    interpretgan: InterpretGAN | None = None

    def rows(self) -> list[dict[str, Any]]:
        """The per-layer table, floats rounded to 4 digits (as printed and reported)."""
        return [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            for r in self.result.rows()
        ]


def diagnose(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    layers: Sequence[str | nn.Module] | None = None,
    interpretgan: InterpretGAN | None = None,
    topk: float = 0.1,
    seed: int = 0,
) -> Diagnosis:
    """Attack ``model`` on ``(x, y)`` (torch seeded with ``seed``), then measure each layer
    with :func:`~underfire.diagnosis.layer_vulnerability` (information loss from
    ``interpretgan`` when given, else from a linear probe)."""
    torch.manual_seed(seed)
    x_adv = attack(model, x, y)
    with warnings.catch_warnings():  # fewer than 3 layers: the correlations print as nan
        warnings.simplefilter("ignore", UserWarning)
        result = layer_vulnerability(
            model, x, x_adv, layers, y=y, interpretgan=interpretgan, topk=topk
        )
    return Diagnosis(model, x, y, x_adv, repr(attack), result, interpretgan)


def write_diagnosis(
    run: Diagnosis,
    out: str | Path,
    *,
    title: str,
    label: str,
    about: Mapping[str, Any],
    dataset: str = "",
    classes: Sequence[str] | None = None,
    images: int = 8,
) -> dict[str, Any]:
    """Write ``out/results.json``, ``out/report.{html,md}`` and ``out/figures/``.

    Args:
        run: the diagnosis.
        out: the output folder (the caller holds it: :func:`underfire.core.outputs.guard_output`).
        title: the report's title.
        label: the attack in a few words, for the figure (e.g. ``"pgd ε=0.1"``).
        about: what the run was, first in results.json (checkpoint, dataset, attack settings).
        dataset: the data set's name, for the text.
        classes: class names, for the InterpretGAN figure.
        images: rows of the InterpretGAN figure.

    Returns:
        The content of results.json.
    """
    from underfire.diagnosis.plots import plot_layer_vulnerability

    out = Path(out)
    figures = out / "figures"
    result = run.result
    plot_layer_vulnerability({dataset: result}, figures / "layers.png", title=label)
    report = Report(title)
    report.text(
        f"{len(run.x)} `{dataset}` test images; accuracy {result.clean_accuracy:.1%} clean, "
        f"{result.adversarial_accuracy:.1%} under {run.attack}. Definitions: docs/diagnosis.md "
        "(Zheng, Zhang, Lee & Prakash 2020 define no public formulas; these are underfire's). "
        f"Information loss from: {result.information_source}."
    )
    report.section("Per-layer figures")
    report.table(run.rows())
    report.text(
        f"Input relative change ‖x′−x‖/‖x‖ = {result.input_amplification:.4f}. Across layers, "
        f"information loss vs amplification: Spearman ρ = {result.correlation:.3f}, Pearson r = "
        f"{result.correlation_pearson:.3f}; information a layer loses itself vs its log growth: "
        f"ρ = {result.correlation_local:.3f}."
    )
    report.figure(
        figures / "layers.png",
        "Amplification, growth, top-k patching and information loss per layer",
    )
    payload = dict(about) | {"n": len(run.x), "diagnosis": result.to_dict()}
    if run.interpretgan is not None:
        payload["interpretgan"] = _interpretgan_section(run, report, figures, classes, images)
    _io.write_json(out / "results.json", payload)
    report.write(out)
    return payload


def _interpretgan_section(
    run: Diagnosis,
    report: Report,
    figures: Path,
    classes: Sequence[str] | None,
    images: int,
) -> dict[str, Any]:
    """What each layer encodes, by the InterpretGAN's generators: a table and a figure."""
    from underfire.diagnosis.plots import plot_interpretgan

    gan, model, x, y, x_adv = run.interpretgan, run.model, run.x, run.y, run.x_adv
    assert gan is not None  # called only with an InterpretGAN
    # rows: the images the attack fooled first, then the others, in order
    fooled = ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)).nonzero().flatten()
    pick = torch.cat([fooled, torch.arange(len(x), device=x.device)]).unique(sorted=False)
    chosen = list(dict.fromkeys(pick.tolist()))[:images]
    plot_interpretgan(
        gan,
        model,
        x[chosen],
        x_adv[chosen],
        figures / "interpretgan.png",
        layers=run.result.layers,
        classes=classes,
    )
    clean = evaluate_interpretgan(gan, model, x, y)
    adversarial = evaluate_interpretgan(gan, model, x_adv, y)
    report.section("InterpretGAN: what each layer encodes")
    report.table(
        [
            {
                "layer": n,
                "clean: label kept": clean[n]["consistency"],
                "clean: correct": clean[n]["accuracy"],
                "adversarial: label kept": adversarial[n]["consistency"],
                "adversarial: correct": adversarial[n]["accuracy"],
            }
            for n in run.result.layers
        ]
    )
    report.figure(
        figures / "interpretgan.png",
        "Clean and adversarial inputs, then per layer the images generated from clean and from "
        "adversarial features, titled with the classifier's label (red: differs from the clean input's)",
    )
    return {"clean": clean, "adversarial": adversarial}
