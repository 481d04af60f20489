"""The diagnosis report is a library function: the Python API writes what `diagnose` writes."""

from __future__ import annotations

import json

import torch

from underfire.attacks import FGSM
from underfire.diagnosis import diagnose, write_diagnosis


def test_diagnose_and_write_diagnosis_from_python(tmp_path, digits_model, digits_splits):
    test = digits_splits["test"]
    x, y = test.x[:48], test.y[:48]
    run = diagnose(digits_model, x, y, FGSM(eps=0.2), seed=0)
    again = diagnose(digits_model, x, y, FGSM(eps=0.2), seed=0)
    assert torch.equal(run.x_adv, again.x_adv)
    assert run.result.adversarial_accuracy < run.result.clean_accuracy
    rows = run.rows()
    assert [r["layer"] for r in rows] == run.result.layers
    assert all(v == round(v, 4) for r in rows for v in r.values() if isinstance(v, float))
    about = {"checkpoint": "m.pt", "dataset": "digits", "attack": {"name": "fgsm", "eps": 0.2}}
    payload = write_diagnosis(
        run, tmp_path, title="m.pt under fgsm", label="fgsm ε=0.2", about=about, dataset="digits"
    )
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored == json.loads(json.dumps(payload))
    assert list(stored)[:5] == ["checkpoint", "dataset", "attack", "n", "diagnosis"]
    assert stored["n"] == 48 and "interpretgan" not in stored
    assert stored["diagnosis"]["clean_accuracy"] == run.result.clean_accuracy
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# m.pt under fgsm") and "Per-layer figures" in report
    assert (tmp_path / "report.html").exists() and (tmp_path / "figures" / "layers.png").exists()
