"""A study folder's manifest, the names of its files, and each rater's plan (item order and
left/right), shared by the study that builds the folder and the server that serves it."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

__all__ = ["DATABASE", "FORMAT", "MANIFEST", "QUESTION", "rater_plan", "read_manifest"]

#: The manifest's format tag (the server refuses a folder that is not a study).
FORMAT = "underfire.human-study/1"
#: The question shown for every pair, as in Ross & Doshi-Velez (2018).
QUESTION = "Which image looks more like a {target}?"
#: The study folder's manifest and answer database.
MANIFEST = "manifest.json"
DATABASE = "answers.sqlite"


def read_manifest(study: str | Path) -> dict[str, Any]:
    """A study folder's manifest (a folder without one is not a study: one-line error)."""
    path = Path(study) / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{study} is not a study folder (no {MANIFEST}); build one with "
            "`underfire study build --quick --out STUDY`"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a study manifest of format {FORMAT}")
    return manifest


def rater_plan(manifest: dict[str, Any], rater: str) -> list[tuple[str, bool]]:
    """The items a rater sees, in their order, each with whether left/right are swapped
    (image ``b`` on the left). The same rater always gets the same plan."""
    digest = hashlib.sha256(f"{manifest['seed']}:{rater}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    ids = [it["id"] for it in manifest["items"]]
    rng.shuffle(ids)
    return [(i, rng.random() < 0.5) for i in ids]
