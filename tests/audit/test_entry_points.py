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
