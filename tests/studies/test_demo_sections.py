"""`underfire demo --sections NAME` runs any subset of sections (a newcomer tried `attacks`
alone and got "error: test_accuracy")."""

from __future__ import annotations

from pathlib import Path

from underfire.cli import main


def test_demo_with_one_section_reports_test_accuracy(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--sections", "attacks", "--epochs", "2", "--out", str(tmp_path)]) == 0
    assert "test accuracy" in capsys.readouterr().err
    assert (tmp_path / "report.html").exists()


def test_unknown_section_names_the_known_ones(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--sections", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown demo section 'nope'" in err and "attacks" in err


def test_help_lists_the_sections() -> None:
    from underfire.commands.demo import SECTION_NAMES
    from underfire.studies.demo import SECTION_NAMES as STUDY_SECTIONS

    assert SECTION_NAMES == STUDY_SECTIONS


def test_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from underfire.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'underfire --help imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
