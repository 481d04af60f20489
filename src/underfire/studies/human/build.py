"""Building a study folder: craft JSMA examples against every model for the same sources and
targets, keep the sources every attack turned into its target, and write the stimuli (PNG),
the attention checks and ``manifest.json``.

Folder layout::

    STUDY/manifest.json     items, checks, models, attack settings, seed, completion code
    STUDY/images/*.png      stimuli, opaque names (a rater cannot read the model from the URL)
    STUDY/models/*.pt       the quick models (``--quick`` only)
    STUDY/answers.sqlite    the answers, created by ``underfire study serve``
"""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from underfire.attacks.jsma import JSMA
from underfire.core import io as _io
from underfire.raters.manifest import FORMAT, MANIFEST, QUESTION
from underfire.studies.base import StudyRun
from underfire.studies.human.models import load_sources

__all__ = ["craft", "write_stimuli"]


def _attack_all(run: StudyRun, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    cfg = run.config
    models = run.state["models"]
    attack = JSMA(theta=cfg.theta, gamma=cfg.gamma)
    target = (y + 1) % 10  # the paper's target rule, the same for every model
    ok = torch.ones(len(y), dtype=torch.bool)
    adv: dict[str, torch.Tensor] = {}
    success: dict[str, float] = {}
    for name, model in run.bar(models.items(), "JSMA", total=len(models)):
        run.log(f"JSMA (θ={cfg.theta:g}, γ={cfg.gamma:g}) against {name} on {len(y)} images")
        with torch.no_grad():
            clean_ok = model(x).argmax(1) == y
        adv[name] = attack(model, x, y, target)
        with torch.no_grad():
            hit = model(adv[name]).argmax(1) == target
        success[name] = float(hit[clean_ok].float().mean()) if bool(clean_ok.any()) else 0.0
        ok &= clean_ok & hit
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))
    keep = order[ok[order]][: cfg.pairs].sort().values
    return {
        "index": keep,
        "label": y[keep],
        "target": target[keep],
        "clean": x[keep],
        "adv": {name: a[keep] for name, a in adv.items()},
        "success": success,
        "candidates": len(y),
    }


def craft(run: StudyRun) -> dict[str, Any]:
    """JSMA against every model; cached under the models' weights and the source images."""
    x, y = load_sources(run)
    models = run.state["models"]
    result = run.cached(
        "craft",
        lambda: _attack_all(run, x, y),
        reads=("theta", "gamma", "seed", "pairs"),
        uses={f"model-{name}": m for name, m in models.items()} | {"sources": (x, y)},
        store="torch",
    )
    run.state["crafted"] = result
    if len(result["index"]) == 0:
        raise ValueError(
            "no source image was turned into its target by every model's attack; raise "
            "--candidates or compare other models"
        )
    return {
        "kept": len(result["index"]),
        "candidates": result["candidates"],
        "success": result["success"],
    }


def _png(image: torch.Tensor, path: Path, px: int) -> None:
    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8)
    mode = "L" if arr.shape[0] == 1 else "RGB"
    data = arr[0].numpy() if mode == "L" else arr.permute(1, 2, 0).numpy()
    picture = Image.fromarray(data, mode=mode).resize((px, px), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    _io.atomic_write(path, lambda f: picture.save(f, format="PNG"))


def _name(seed: int, *parts: object) -> str:
    text = ":".join(map(str, (seed, *parts)))
    return "images/" + hashlib.sha256(text.encode()).hexdigest()[:16] + ".png"


def _checks(run: StudyRun, out: Path, px: int) -> list[dict[str, Any]]:
    """A clean test digit of class t against uniform noise: "which looks more like a t?"."""
    cfg = run.config
    x, y = load_sources(run)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    checks = []
    for i in range(cfg.checks):
        target = int(torch.randint(0, 10, (1,), generator=gen))
        pool = (y == target).nonzero().flatten()
        digit = x[int(pool[0])] if len(pool) else x[0]
        target = target if len(pool) else int(y[0])
        noise = torch.rand(digit.shape, generator=gen)
        a, b = _name(cfg.seed, "check", i, "digit"), _name(cfg.seed, "check", i, "noise")
        _png(digit, out / a, px)
        _png(noise, out / b, px)
        checks.append(
            {
                "kind": "check",
                "target": target,
                "a": "digit",
                "b": "noise",
                "image_a": a,
                "image_b": b,
                "correct": "a",
            }
        )
    return checks


def write_stimuli(run: StudyRun) -> dict[str, Any]:
    """Images, attention checks and ``manifest.json`` into the study folder."""
    if run.out is None:
        raise ValueError("a study is built into a folder: pass out=...")
    cfg, out = run.config, run.out
    crafted = run.state["crafted"]
    names = list(run.state["models"])
    items: list[dict[str, Any]] = []
    for k in range(len(crafted["index"])):
        src = int(crafted["index"][k])
        for name in names:
            _png(crafted["adv"][name][k], out / _name(cfg.seed, src, name), cfg.image_px)
        for a, b in itertools.combinations(names, 2):
            items.append(
                {
                    "kind": "pair",
                    "source": src,
                    "label": int(crafted["label"][k]),
                    "target": int(crafted["target"][k]),
                    "a": a,
                    "b": b,
                    "image_a": _name(cfg.seed, src, a),
                    "image_b": _name(cfg.seed, src, b),
                }
            )
    items += _checks(run, out, cfg.image_px)
    # opaque ids in a seeded order: an id tells a rater nothing about the item
    random.Random(cfg.seed).shuffle(items)
    for i, item in enumerate(items):
        item["id"] = f"q{i + 1:03d}"
    manifest = {
        "format": FORMAT,
        "question": QUESTION,
        "dataset": run.state["dataset"],
        "seed": cfg.seed,
        "models": names,
        "attack": {
            "name": "jsma",
            "theta": cfg.theta,
            "gamma": cfg.gamma,
            "target": "(y + 1) mod 10",
        },
        "randomization": "per rater: item order and left/right from SHA-256(seed, rater id)",
        "completion_code": secrets.token_hex(4).upper(),
        "items": sorted(items, key=lambda it: it["id"]),
    }
    _io.write_json(out / MANIFEST, manifest)
    pairs = sum(1 for it in items if it["kind"] == "pair")
    return {"items": len(items), "pairs": pairs, "checks": len(items) - pairs, "models": names}
