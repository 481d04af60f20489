"""CW as ``underfire audit`` runs it (5 binary-search steps × 100 Adam steps, lr 0.05,
const 1), cold-started (Carlini & Wagner's code: every search step starts at the clean
input) against warm-started (each search step after the first starts at the sample's best
example so far), two cheaper warm budgets, and DDN (Rony et al. 2019: one minimal-L2
optimization per image, no binary search) at 100 and 200 steps.

For each variant: success on the correctly classified images, median and mean L2 of the
successes, image-steps (the images the model's forward pass saw, counted by a hook: the
early abort removes samples from the batch) and wall time. Writes
``bench/results/cw.json``. Variants run one after the other in this process, or one per
process with ``--variant`` (two processes side by side on two cores: pass
``--threads 1``).

    python bench/cw.py --checkpoint docs/results/models/ross2018-mnist-full-normal.pt \\
        --data-root ../shared/data --n 200 [--variant base warm] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from underfire.attacks import CW, DDN
from underfire.checkpoint import load_checkpoint
from underfire.data import load_dataset

AUDIT = {"steps": 100, "binary_search_steps": 5, "const": 1.0, "lr": 0.05}
VARIANTS: dict[str, dict[str, Any]] = {
    "base": AUDIT,
    "warm": AUDIT | {"warm_start": True},
    "warm-50-steps": AUDIT | {"warm_start": True, "steps": 50},
    "warm-3-searches": AUDIT | {"warm_start": True, "binary_search_steps": 3},
    "ddn-100": {"attack": "ddn", "steps": 100},
    "ddn-200": {"attack": "ddn", "steps": 200},
}


def run_variant(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, name: str) -> dict:
    seen = [0]

    def count(module: Any, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        seen[0] += inputs[0].shape[0]

    hook = model.register_forward_hook(count)
    settings = dict(VARIANTS[name])
    attack = DDN(**settings) if settings.pop("attack", "cw") == "ddn" else CW(**settings)
    t0 = time.perf_counter()
    try:
        x_adv = torch.cat(
            [attack(model, x[a : a + 32], y[a : a + 32]) for a in range(0, len(x), 32)]
        )
    finally:
        hook.remove()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    l2 = (x_adv - x).flatten(1).norm(dim=1)[fooled]
    return {
        "settings": attack.config(),
        "success": fooled.double().mean().item(),
        "median_l2": l2.median().item() if len(l2) else None,
        "mean_l2": l2.mean().item() if len(l2) else None,
        "image_steps": seen[0],
        "seconds": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--n", type=int, default=200, help="first n test images")
    parser.add_argument("--variant", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/cw.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).model
    test = load_dataset(args.dataset, "test", args.data_root)
    x, y = test.x[: args.n], test.y[: args.n]
    with torch.no_grad():
        right = model(x).argmax(1) == y
    x, y = x[right], y[right]
    out = Path(args.out)
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    result.update(
        {
            "benchmark": "cw: cold vs warm-started binary search (the audit's CW), and DDN",
            "checkpoint": args.checkpoint,
            "images": f"the {len(x)} correctly classified of the first {args.n} {args.dataset} test images",
            "threads": args.threads,
            "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        }
    )
    variants = result.setdefault("variants", {})
    for name in args.variant:
        variants[name] = run_variant(model, x, y, name) | {
            "load_average_1_5_15_min": list(os.getloadavg())
        }
        print(name, json.dumps(variants[name]))
    if "base" in variants and "warm" in variants:
        base, warm = variants["base"], variants["warm"]
        result["warm_vs_base"] = {
            "image_steps_ratio": base["image_steps"] / warm["image_steps"],
            "median_l2_change": warm["median_l2"] / base["median_l2"] - 1,
        }
    for ddn in ("ddn-100", "ddn-200"):
        if ddn in variants and "warm" in variants:
            warm, d = variants["warm"], variants[ddn]
            result[f"{ddn}_vs_warm"] = {
                "image_steps_ratio": warm["image_steps"] / d["image_steps"],
                "median_l2_change": d["median_l2"] / warm["median_l2"] - 1,
            }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)  # atomic: a killed run leaves the previous file


if __name__ == "__main__":
    main()
