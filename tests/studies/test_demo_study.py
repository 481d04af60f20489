"""The demo on the study runner: an unchanged rerun reuses the sections' results, and a
replaced classifier (same file name, other weights) has them recomputed, never reused."""

from __future__ import annotations

import inspect

import pytest
import torch

from underfire.checkpoint import load_checkpoint, save_checkpoint
from underfire.studies import STUDIES
from underfire.studies.demo import STUDY, configure, run_demo


def test_the_demo_is_registered_with_its_options():
    assert STUDIES["demo"] is STUDY
    assert set(inspect.signature(configure).parameters) == {
        "dataset",
        "data_root",
        "seed",
        "epochs",
        "sections",
    }
    assert STUDY.default_out(configure()).name == "underfire-demo"


def test_unknown_sections_name_the_known_ones():
    with pytest.raises(ValueError, match="unknown demo section 'nope'.*attacks"):
        configure(sections=["nope"])
    with pytest.raises(TypeError, match="list of section names"):
        configure(sections="attacks")


def test_a_replaced_model_has_its_sections_recomputed(tmp_path):
    """Fails if a section's cached result is keyed on the settings only: the third run finds
    the same settings, the same checkpoint path and finished training state, but other
    weights in model.pt."""
    first = run_demo(tmp_path, epochs=1, sections=["classifier"])
    assert first["run"]["reused"] == []
    second = run_demo(tmp_path, epochs=1, sections=["classifier"])
    assert second["run"]["reused"] == ["classifier"]
    assert second["classifier"] == first["classifier"] | {"train_seconds": 0.0}

    saved = load_checkpoint(tmp_path / "model.pt")
    with torch.no_grad():
        for p in saved.model.parameters():
            p.zero_()  # a constant classifier: one class for every image
    save_checkpoint(
        tmp_path / "model.pt",
        saved.model,
        meta=saved.meta,
        optimizer_state=saved.optimizer_state,
        trainer_state=saved.trainer_state,
    )
    third = run_demo(tmp_path, epochs=1, sections=["classifier"])
    assert "classifier" not in third["run"]["reused"]
    assert third["classifier"]["test_accuracy"] < 0.2 < first["classifier"]["test_accuracy"]
    assert sum(1 for row in third["classifier"]["confusion"] for c in row if c) <= 10
