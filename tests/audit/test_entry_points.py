"""``underfire.audit(model, data)`` as the issue writes it, and ``underfire audit`` itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import underfire
from tests.cli.conftest import cli_env, run_cli


def test_audit_is_callable_from_the_package() -> None:
    from underfire.studies.audit import audit

    assert underfire.audit is audit
    from underfire import audit as imported

    assert imported is audit


def test_import_underfire_stays_free_of_torch() -> None:
    code = "import sys, underfire; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_the_audit_command_on_a_tiny_checkpoint(tmp_path: Path) -> None:
    from underfire.checkpoint import save_checkpoint
    from underfire.models import model_for_dataset

    torch.manual_seed(0)
    model = model_for_dataset("ross-cnn", "digits")
    save_checkpoint(tmp_path / "model.pt", model, meta={"dataset": "digits"})
    done = run_cli(
        "audit",
        "--checkpoint",
        str(tmp_path / "model.pt"),
        "--n",
        "8",
        "--n-maps",
        "2",
        "--attacks",
        "fgsm,pgd",
        "--interpreters",
        "grad,gradcam",
        "--target-layer",
        "net.features.block2",
        "--eps",
        "0.1",
        "--no-surrogate",
        "--out",
        str(tmp_path / "audit"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # the summary is the command's result: on stdout
    assert "clean accuracy" in done.stdout and "report:" in done.stdout
    results = json.loads((tmp_path / "audit" / "results.json").read_text())
    assert results["config"]["target_layer"] == "net.features.block2"
    assert results["layers"]["gradcam"]["how"] == "given"
    assert (tmp_path / "audit" / "report.html").exists()


def test_the_same_audit_command_after_the_checkpoint_was_replaced_audits_the_new_model(
    tmp_path: Path,
) -> None:
    """Fails if `underfire audit` run again with the same arguments reports the parts of the
    model the checkpoint held before (every part keyed on settings and data only)."""
    from underfire.checkpoint import save_checkpoint
    from underfire.data import load_dataset
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig, Trainer

    test = load_dataset("digits", "test")
    args = ["audit", "--checkpoint", str(tmp_path / "m.pt"), "--n", "40", "--attacks", "fgsm"]
    args += ["--interpreters", "grad", "--n-maps", "1", "--eps", "0.1", "--no-surrogate"]
    args += ["--out", str(tmp_path / "A")]
    accuracies = []
    for trained in (True, False):  # first a trained model, then an untrained one in its place
        torch.manual_seed(0)
        model = model_for_dataset("ross-cnn", "digits")
        if trained:
            Trainer(model, config=TrainConfig(epochs=3, batch_size=64)).fit(
                load_dataset("digits", "train")
            )
        save_checkpoint(tmp_path / "m.pt", model, meta={"dataset": "digits"})
        with torch.no_grad():
            accuracies.append((model.eval()(test.x[:40]).argmax(1) == test.y[:40]).double().mean())
        done = run_cli(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        results = json.loads((tmp_path / "A" / "results.json").read_text())
        assert results["clean"]["accuracy"] == float(accuracies[-1])
    assert accuracies[0] > 0.8 > accuracies[1]
    assert "resumed" not in results  # the replaced model's audit reused nothing
