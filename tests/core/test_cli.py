import importlib
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.browser import assert_report_renders
from underfire.cli import COMMANDS, build_parser, main


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        command = name.replace("_", "-")
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage: underfire" in capsys.readouterr().out


def test_datasets_lists_availability(capsys, tmp_path):
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "yes" in out and "mnist" in out


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            ["train", "--dataset", "digits", "--epochs", "2", "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    summary = json.loads((out / "train.json").read_text())
    assert summary["test_accuracy"] > 0.5 and (out / "model.pt").exists()
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "digits" and result["accuracy"] == pytest.approx(
        summary["test_accuracy"]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["train", "--model", "vgg"], "unknown model 'vgg'"),
        (["train", "--dataset", "mnist", "--data-root", "/nonexistent"], "train-images-idx3-ubyte"),
        (["evaluate", "--checkpoint", "/nonexistent/model.pt"], "not found"),
    ],
)
def test_user_errors_are_one_line_messages(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_argument_validation(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["train", "--epochs", "0"])
    assert info.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_console_script_entry_point(capsys):
    """The ``underfire`` console script declared in pyproject.toml runs the CLI, and so does
    the installed script (``python -m underfire`` goes through ``__main__`` instead).

    Fails if ``[project.scripts]`` names a module or function that does not exist or is not
    the CLI, or if the installed script does not run.
    """
    repo = Path(__file__).resolve().parents[2]
    scripts = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["underfire"].partition(":")
    entry = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as info:
        entry(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("underfire ")
    script = shutil.which("underfire", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the package is not installed (pip install -e .): no console script to run")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("underfire "), result.stderr


def test_demo_writes_results_figures_and_report(tmp_path):
    from underfire.studies.demo import run_demo

    out = tmp_path / "demo"
    results = run_demo(out, epochs=15)
    assert results["classifier"]["test_accuracy"] >= 0.95
    saved = json.loads((out / "results.json").read_text())
    assert saved["classifier"]["test_accuracy"] == results["classifier"]["test_accuracy"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Classifier" in html
    assert (out / "report.md").exists() and (out / "figures" / "classifier.png").exists()
    # every MASK map explains something (issue 24: 2 of the 8 were blank with the blur alone)
    mask = saved["interpreters"]["mask"]
    assert mask["blank"] == 0 and len(mask["references"]) == saved["interpreters"]["n_images"]
    assert "MASK found a deletion for 8 of 8 images" in (out / "report.md").read_text()
    assert_report_renders(out / "report.html", min_images=4)
