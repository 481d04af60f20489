"""Helpers of the human-study tests: a small study folder written directly (no training),
and the study server run as a subprocess on a free loopback port, always killed at the end."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from underfire.raters.manifest import FORMAT, QUESTION

ADMIN = "test-admin-token"
CODE = "CODE1234"


def make_study(
    folder: Path, models: tuple[str, ...] = ("normal", "gradreg"), sources: int = 3, checks: int = 1
) -> dict[str, Any]:
    """A study folder with random 8×8 stimuli: ``sources`` × model pairs items, plus checks."""
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)

    def image(name: str) -> str:
        pixels = (rng.random((8, 8)) * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").resize((64, 64), Image.Resampling.NEAREST).save(
            folder / "images" / f"{name}.png"
        )
        return f"images/{name}.png"

    items: list[dict[str, Any]] = []
    for s in range(sources):
        for a, b in itertools.combinations(models, 2):
            items.append(
                {
                    "kind": "pair",
                    "source": s,
                    "label": s,
                    "target": (s + 1) % 10,
                    "a": a,
                    "b": b,
                    "image_a": image(f"s{s}{a}{b}a"),
                    "image_b": image(f"s{s}{a}{b}b"),
                }
            )
    for c in range(checks):
        items.append(
            {
                "kind": "check",
                "target": c,
                "a": "digit",
                "b": "noise",
                "image_a": image(f"c{c}a"),
                "image_b": image(f"c{c}b"),
                "correct": "a",
            }
        )
    for i, item in enumerate(items):
        item["id"] = f"q{i + 1:03d}"
    manifest = {
        "format": FORMAT,
        "question": QUESTION,
        "dataset": "digits",
        "seed": 0,
        "models": list(models),
        "attack": {"name": "jsma", "theta": 1.0, "gamma": 0.25},
        "randomization": "test",
        "completion_code": CODE,
        "items": items,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(
    url: str, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """``(status, decoded JSON or text)`` of a GET (no body) or POST."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} | (headers or {})
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            status, text = res.status, res.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def start_server(study: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "underfire",
            "study",
            "serve",
            str(study),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--admin-token",
            ADMIN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        with contextlib.suppress(OSError):
            if request(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                return proc
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("the server did not answer within 30 s")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


@contextlib.contextmanager
def served(study: Path) -> Iterator[str]:
    """The study served on a free loopback port for the block; yields its base URL."""
    port = free_port()
    proc = start_server(study, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
