"""The audit's robust-accuracy figure names its curves."""

from __future__ import annotations

from pathlib import Path

import underfire.studies.audit.figures as figures


def test_the_robust_accuracy_figure_has_a_legend_naming_every_curve(tmp_path: Path, monkeypatch):
    """Fails if the legend is left out (the curves cannot be told apart without it)."""
    seen = []

    def capture(fig, path):
        seen.append(fig)
        return path

    monkeypatch.setattr(figures, "save_figure", capture)
    curves = {"fgsm": [1.0, 0.5], "worst case": [1.0, 0.4], "fgsm (transfer)": [1.0, 0.8]}
    figures.robust_figure([0.0, 0.1], curves, tmp_path / "r.png")
    legend = seen[0].axes[0].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == list(curves)
