"""Failure kinds 'corrupt weights', 'NaN', 'bad data' and 'tracebacks for user errors' at the
command line: each is one line on stderr, exit status 2, and nothing half-written."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from tests.cli.conftest import fake_mnist, one_line_error, write_idx
from underfire.checkpoint import load_checkpoint


def _flip_inside_a_tensor(path):
    model = load_checkpoint(path).model
    weight = max(model.parameters(), key=lambda p: p.numel())
    needle = weight.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()[:32]
    raw = bytearray(path.read_bytes())
    at = raw.find(needle)
    assert at > 0
    for i in range(at, at + 8):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_flipped_bytes_in_a_checkpoint_are_refused(tmp_path, cli, trained_digits):
    _flip_inside_a_tensor(trained_digits)
    code, out, err = cli("evaluate", "--checkpoint", str(trained_digits), "--device", "cpu")
    one_line_error(code, err, "fails its SHA-256 checksum", "restore it from a copy or retrain")
    assert out == ""
    attack_out = tmp_path / "attack"
    code, _, err = cli(
        "attack", "--checkpoint", str(trained_digits), "--out", str(attack_out), "--n", "8"
    )
    one_line_error(code, err, "checksum")
    assert not attack_out.exists()  # nothing half-written


def test_checkpoint_with_a_str_where_a_dict_belongs(tmp_path, cli, trained_digits):
    from underfire.checkpoint import checksum

    payload = torch.load(trained_digits, weights_only=True)
    payload["meta"] = "digits"
    payload["checksum"]["digest"] = checksum(payload)
    torch.save(payload, trained_digits)
    code, _, err = cli("evaluate", "--checkpoint", str(trained_digits))
    one_line_error(code, err, "'meta' entry is a str, not a dict")


def test_model_evaluated_on_data_of_another_shape(tmp_path, cli, trained_digits):
    root = fake_mnist(tmp_path / "data")
    code, _, err = cli(
        "evaluate", "--checkpoint", str(trained_digits), "--dataset", "mnist",
        "--data-root", str(root), "--device", "cpu",
    )  # fmt: skip
    one_line_error(code, err, "for 1×8×8 images with 10 classes", "mnist has 1×28×28 images")
    out = tmp_path / "explain"
    code, _, err = cli(
        "explain", "--checkpoint", str(trained_digits), "--dataset", "mnist",
        "--data-root", str(root), "--out", str(out), "--interpreter", "grad",
    )  # fmt: skip
    one_line_error(code, err, "1×28×28")
    assert not out.exists()


def test_wrong_input_size_is_named_before_the_network_fails(trained_digits):
    model = load_checkpoint(trained_digits).model
    with pytest.raises(
        ValueError, match=r"expects input of shape \(N, 1, 8, 8\), got \(2, 1, 28, 28\)"
    ):
        model(torch.rand(2, 1, 28, 28))


def test_label_255_in_an_idx_file(tmp_path, cli, trained_digits):
    root = fake_mnist(tmp_path / "data", label_max=255)
    code, _, err = cli(
        "evaluate", "--checkpoint", str(trained_digits), "--dataset", "mnist",
        "--data-root", str(root),
    )  # fmt: skip
    one_line_error(
        code,
        err,
        "t10k-labels-idx1-ubyte holds labels in [0, 255]",
        "10 classes",
        "download it again",
    )


def test_corrupt_gz_is_one_line_and_datasets_calls_it_damaged(tmp_path, cli, trained_digits):
    root = fake_mnist(tmp_path / "data", n=10_000)
    images = root / "mnist" / "t10k-images-idx3-ubyte"
    data = gzip.compress(images.read_bytes(), compresslevel=1)
    images.unlink()
    bad = bytearray(data)
    bad[len(bad) // 2 : len(bad) // 2 + 64] = b"\x00" * 64
    images.with_suffix(".gz").write_bytes(bytes(bad))
    code, _, err = cli(
        "evaluate", "--checkpoint", str(trained_digits), "--dataset", "mnist",
        "--data-root", str(root),
    )  # fmt: skip
    one_line_error(code, err, "t10k-images-idx3-ubyte.gz cannot be read", "download it again")
    code, out, _ = cli("datasets", "--data-root", str(root))
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("mnist "))
    assert " damaged " in row
    assert "mnist: " in out and "cannot be read" in out


@pytest.mark.parametrize("how", ["fewer-images", "cut-file"])
def test_truncated_mnist_is_not_called_available(tmp_path, cli, how):
    root = tmp_path / "data"
    if how == "fewer-images":  # a consistent header, but not MNIST's 10,000 test images
        fake_mnist(root, n=9_000)
    else:
        fake_mnist(root)
        path = root / "mnist" / "t10k-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-5000])
    code, out, _ = cli("datasets", "--data-root", str(root))
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("mnist "))
    assert " damaged " in row, out
    assert ("9000 images" if how == "fewer-images" else "header says") in out
    code, out, _ = cli("datasets", "--data-root", str(root), "--no-verify")
    assert " yes " in next(line for line in out.splitlines() if line.startswith("mnist "))


def test_complete_fake_mnist_is_available(tmp_path, cli):
    code, out, _ = cli("datasets", "--data-root", str(fake_mnist(tmp_path / "data")))
    assert code == 0
    assert " yes " in next(line for line in out.splitlines() if line.startswith("mnist "))


def test_labels_beyond_the_classes_in_a_compressed_file(tmp_path):
    from underfire.data import DatasetNotFoundError, load_dataset

    root = fake_mnist(tmp_path / "data")
    labels = np.full(10_000, 10, dtype=np.uint8)
    (root / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    write_idx(root / "mnist" / "t10k-labels-idx1-ubyte", labels, 2049, compress=True)
    with pytest.raises(DatasetNotFoundError, match=r"labels in \[10, 10\].*10 classes"):
        load_dataset("mnist", "test", root)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--lr", "nan"], "--lr: expected a positive, finite number"),
        (["train", "--lr", "inf"], "--lr: expected a positive, finite number"),
        (["train", "--lam", "nan", "--defense", "gradreg"], "--lam: expected a finite number"),
        (["attack", "--checkpoint", "x.pt", "--eps", "nan"], "expected finite numbers"),
        (["train", "--epochs", "0"], "positive integer"),
    ],
)
def test_non_finite_and_bad_arguments_are_one_line(capsys, argv, needle):
    from underfire.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    one_line_error(info.value.code, capsys.readouterr().err, needle, "--help")


def test_argument_errors_are_one_line(tmp_path):
    from tests.cli.conftest import run_cli

    result = run_cli("train", "--lr", "nan", cwd=tmp_path)
    one_line_error(result.returncode, result.stderr, "--lr: expected a positive, finite number")


def test_diverging_training_stops_with_one_error_line_and_saves_nothing(tmp_path, cli):
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "--steps", "5", "--defense", "gradreg", "--lam", "1e38", "--out", str(out)
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err
    assert [line for line in lines if ": error: " in line] == [lines[-1]]
    assert "training loss became inf at step 1" in lines[-1] and "lower" in lines[-1]
    assert not (out / "model.pt").exists() and not (out / "train.json").exists()


@pytest.mark.parametrize("bug", [RuntimeError("internal"), AssertionError("invariant")])
def test_bugs_are_not_swallowed(monkeypatch, bug):
    from underfire.cli import main
    from underfire.commands import evaluate

    def broken(args):
        raise bug

    monkeypatch.setattr(evaluate, "run", broken)
    with pytest.raises(type(bug)):
        main(["evaluate", "--checkpoint", "x.pt"])


def test_traceback_of_a_user_error_on_request(monkeypatch):
    from underfire.checkpoint import CheckpointError
    from underfire.cli import main

    monkeypatch.setenv("UNDERFIRE_TRACEBACK", "1")
    with pytest.raises(CheckpointError, match="not found"):
        main(["evaluate", "--checkpoint", "/nonexistent/model.pt"])
