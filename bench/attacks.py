"""Throughput of underfire's FGSM and PGD-10 (L∞) against torchattacks, same model and batch.

For each model the two libraries run interleaved, alternating which goes first, so that
load on a shared machine hits both alike; the median time per call is reported as
images per second (``ratio`` = torchattacks time / underfire time, > 1 means underfire is
faster; ``ratio_best`` compares the fastest calls, the least disturbed by other load), with
each attack's success rate (prediction changed from the clean one;
the labels are the model's own clean predictions, so random weights give a meaningful rate).

    python bench/attacks.py                        # ross-cnn @256 (28×28), resnet50 @64 (224×224)
    python bench/attacks.py --quick                # resnet50 @8, fewer repeats
    python bench/attacks.py --models ross-cnn --batch 512 --repeats 5 --device cuda

Writes bench/results/attacks.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from underfire.attacks import FGSM, PGD
from underfire.models import create_model

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10
DEFAULTS = {
    "ross-cnn": {"batch": 256, "side": 28, "channels": 1},
    "resnet50": {"batch": 64, "side": 224, "channels": 3},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def bench_model(name: str, batch: int, repeats: int, device: torch.device, seed: int) -> dict:
    import torchattacks

    spec = DEFAULTS[name]
    torch.manual_seed(seed)
    kwargs = (
        {"input_size": spec["side"], "in_channels": spec["channels"]} if name == "ross-cnn" else {}
    )
    model = create_model(name, **kwargs).to(device).eval()
    x = torch.rand(batch, spec["channels"], spec["side"], spec["side"], device=device)
    with torch.no_grad():
        y = model(x).argmax(1)

    pairs = {
        "fgsm": (
            lambda: FGSM(eps=EPS)(model, x, y),
            lambda: torchattacks.FGSM(model, eps=EPS)(x, y),
        ),
        "pgd10": (
            lambda: PGD(eps=EPS, step_size=ALPHA, steps=STEPS, random_start=True)(model, x, y),
            lambda: torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)(
                x, y
            ),
        ),
    }
    rows = {}
    for attack, (ours, theirs) in pairs.items():
        ours(), theirs()  # warm-up (allocator, kernels)
        t_ours, t_theirs, adv_ours, adv_theirs = [], [], None, None
        for rep in range(repeats):
            # alternate who goes first: a fixed order biases the comparison under load
            for who in (0, 1) if rep % 2 == 0 else (1, 0):
                if who == 0:
                    dt, adv_ours = timed(ours, device)
                    t_ours.append(dt)
                else:
                    dt, adv_theirs = timed(theirs, device)
                    t_theirs.append(dt)
        with torch.no_grad():
            sr_ours = float((model(adv_ours).argmax(1) != y).float().mean())
            sr_theirs = float((model(adv_theirs).argmax(1) != y).float().mean())
        med_o, med_t = statistics.median(t_ours), statistics.median(t_theirs)
        rows[attack] = {
            "underfire_images_per_s": batch / med_o,
            "torchattacks_images_per_s": batch / med_t,
            "ratio": med_t / med_o,
            # the fastest call of each is the least disturbed by other load on a shared machine
            "ratio_best": min(t_theirs) / min(t_ours),
            "underfire_seconds": t_ours,
            "torchattacks_seconds": t_theirs,
            "underfire_success_rate": sr_ours,
            "torchattacks_success_rate": sr_theirs,
        }
        print(
            f"{name:9s} batch {batch:4d} {attack:6s} underfire {batch / med_o:9.1f} img/s  "
            f"torchattacks {batch / med_t:9.1f} img/s  ratio {med_t / med_o:5.2f} (best-of {min(t_theirs) / min(t_ours):5.2f})  "
            f"success {sr_ours:.2f} / {sr_theirs:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return {
        "model": name,
        "batch": batch,
        "input": [spec["channels"], spec["side"], spec["side"]],
        "attacks": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="ross-cnn,resnet50", help="comma-separated: ross-cnn, resnet50"
    )
    parser.add_argument("--batch", type=int, default=None, help="override every model's batch size")
    parser.add_argument(
        "--resnet-batch", type=int, default=None, help="override ResNet-50's batch size only"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--repeats", type=int, default=9, help="timed calls per library (median reported)"
    )
    parser.add_argument(
        "--resnet-repeats",
        type=int,
        default=None,
        help="repeats for ResNet-50 (default: --repeats)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--quick", action="store_true", help="ResNet-50 at batch 8 with 1 repeat")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "attacks.json"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in DEFAULTS:
            parser.error(f"unknown model {name!r}; choose from {sorted(DEFAULTS)}")
        batch = args.batch or DEFAULTS[name]["batch"]
        repeats = args.repeats
        if name == "resnet50":
            batch = args.resnet_batch or (8 if args.quick and not args.batch else batch)
            repeats = args.resnet_repeats or (1 if args.quick else repeats)
        results.append(bench_model(name, batch, repeats, device, args.seed))
    import torchattacks

    payload = {
        "benchmark": "attacks",
        "settings": {
            "eps": EPS,
            "step_size": ALPHA,
            "steps": STEPS,
            "random_start": True,
            "norm": "linf",
        },
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchattacks": torchattacks.__version__,
        "machine": platform.platform(),
        "processor": platform.processor(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(
        json.dumps(
            {
                r["model"]: {
                    a: {"ratio": round(v["ratio"], 3), "ratio_best": round(v["ratio_best"], 3)}
                    for a, v in r["attacks"].items()
                }
                for r in results
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
