"""`underfire diagnose` and `underfire train-interpretgan` on a checkpoint from `underfire train`."""

from __future__ import annotations

import json

import pytest

from underfire.cli import main


@pytest.mark.slow
def test_diagnose_on_a_trained_checkpoint(tmp_path) -> None:
    ckpt = tmp_path / "m" / "model.pt"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--epochs",
                "3",
                "--out",
                str(ckpt.parent),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    gan_dir = tmp_path / "gan"
    layers = "net.features.pool1,net.features.pool2"
    args = ["train-interpretgan", "--checkpoint", str(ckpt), "--layers", layers, "--steps", "20"]
    assert (
        main(
            [
                *args,
                "--batch-size",
                "16",
                "--width",
                "16",
                "--eval-n",
                "50",
                "--out",
                str(gan_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (gan_dir / "interpretgan.pt").exists() and (gan_dir / "samples.png").exists()
    out = tmp_path / "diag"
    assert (
        main(
            [
                "diagnose",
                "--checkpoint",
                str(ckpt),
                "--interpretgan",
                str(gan_dir),
                "--n",
                "40",
                "--steps",
                "5",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["diagnosis"]["layers"] == layers.split(",")
    assert results["diagnosis"]["information_source"] == "interpretgan"
    assert set(results["interpretgan"]) == {"clean", "adversarial"}
    assert (out / "report.html").exists() and (out / "figures" / "interpretgan.png").exists()
    # without an InterpretGAN: default layers and the linear probe
    assert (
        main(
            [
                "diagnose",
                "--checkpoint",
                str(ckpt),
                "--n",
                "40",
                "--steps",
                "5",
                "--out",
                str(tmp_path / "d2"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    plain = json.loads((tmp_path / "d2" / "results.json").read_text())["diagnosis"]
    assert plain["information_source"] == "linear-probe" and len(plain["layers"]) == 5


def test_diagnose_unknown_layer_is_one_line_error(tmp_path, capsys, digits_model) -> None:
    from underfire.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", digits_model, meta={"dataset": "digits"})
    code = main(
        [
            "diagnose",
            "--checkpoint",
            str(ckpt),
            "--layers",
            "net.nope",
            "--n",
            "20",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    assert code == 2
    assert "no layer 'net.nope'" in capsys.readouterr().err
