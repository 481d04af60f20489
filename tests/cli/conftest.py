"""Helpers for the command-line fault tests: run ``underfire`` in this process or as a
subprocess (with this tree's code), check the one-line error contract, fake data files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import underfire
from underfire.cli import main

SRC = Path(underfire.__file__).resolve().parents[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"  # one thread: bit-identical runs, no oversubscription
    env["MKL_NUM_THREADS"] = "1"
    env.pop("UNDERFIRE_TRACEBACK", None)
    return env


def spawn(*argv: str, cwd: Path) -> subprocess.Popen:
    """Start ``underfire ARGV`` in the background (stdout/stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "underfire.cli", *argv],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "underfire.cli", *argv],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(code: int, err: str, *needles: str) -> str:
    """Assert the CLI's error contract: exit 2, exactly one stderr line, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}, stderr: {err}"
    assert len(lines) == 1, f"expected one line on stderr, got: {err}"
    assert "Traceback" not in err and lines[0].startswith("underfire ")
    assert ": error: " in lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def cli(capsys):
    """Run ``main(argv)`` in this process; returns (exit code, stdout, stderr)."""

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = False) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, compresslevel=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def fake_mnist(root: Path, *, n: int = 10_000, label_max: int = 9, seed: int = 0) -> Path:
    """An MNIST-shaped test part (t10k) under ``root/mnist`` with random content."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    labels[-1] = label_max
    write_idx(root / "mnist" / "t10k-images-idx3-ubyte", images, 2051)
    write_idx(root / "mnist" / "t10k-labels-idx1-ubyte", labels, 2049)
    return root


@pytest.fixture
def trained_digits(tmp_path_factory) -> Path:
    """A tiny digits checkpoint written by `underfire train` (in process, ~1 s)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    torch.set_num_threads(1)
    code = main(
        ["train", "--steps", "4", "--batch-size", "32", "--out", str(out), "--device", "cpu"]
    )
    assert code == 0
    return out / "model.pt"
