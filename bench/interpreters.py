"""Throughput of underfire's interpreters against Captum, and batched MASK against a loop.

Same model, inputs and targets for both sides, timed in the same run with the calls
interleaved (so machine load hits both alike) and the median of ``--repeats`` kept:

* Saliency, IntegratedGradients, GradCAM (``attribute``, i.e. the native attribution that Captum
  also returns, and ``__call__``, the normalized map) vs ``captum.attr.Saliency``,
  ``IntegratedGradients`` and ``LayerGradCam``: images/s and the ratio ours / Captum
  (target ≥ 1.0);
* MASK optimizing the masks of a batch of 64 at once vs the same algorithm run one image at a
  time (target ≥ 3× on CPU).

Writes ``bench/results/interpreters.json``.

    python bench/interpreters.py [--batch-size 32] [--repeats 15] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from underfire.interpreters import GradCAM, IntegratedGradients, Mask, Saliency
from underfire.models import create_model, get_layer


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _compare(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, float]:
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(_timed(fn, device))
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--mask-batch", type=int, default=64)
    parser.add_argument("--mask-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--mask-repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads (1 is steadiest on a shared machine)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "interpreters.json"
    )
    args = parser.parse_args()

    from captum.attr import IntegratedGradients as CaptumIG
    from captum.attr import LayerGradCam
    from captum.attr import Saliency as CaptumSaliency

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = (
        create_model(
            "resnet-small", depth=8, width=16, in_channels=3, input_size=32, num_classes=10
        )
        .to(device)
        .eval()
    )
    n = args.batch_size
    x = torch.rand(n, 3, 32, 32, device=device)
    with torch.no_grad():
        y = model(x).argmax(1)
    layer = get_layer(model, model.target_layer)

    ours_sal, ours_ig, ours_gc = Saliency(), IntegratedGradients(steps=args.ig_steps), GradCAM()
    cap_sal, cap_ig, cap_gc = CaptumSaliency(model), CaptumIG(model), LayerGradCam(model, layer)
    pairs = {
        "saliency": (
            {
                "ours": lambda: ours_sal.attribute(model, x, y),
                "ours_map": lambda: ours_sal(model, x, y),
                "captum": lambda: cap_sal.attribute(x, target=y, abs=True),
            }
        ),
        "integrated_gradients": (
            {
                "ours": lambda: ours_ig.attribute(model, x, y),
                "ours_map": lambda: ours_ig(model, x, y),
                "captum": lambda: cap_ig.attribute(
                    x, baselines=0.0, target=y, n_steps=args.ig_steps
                ),
            }
        ),
        "gradcam": (
            {
                "ours": lambda: ours_gc.attribute(model, x, y),
                "ours_map": lambda: ours_gc(model, x, y),
                "captum": lambda: cap_gc.attribute(x, target=y, relu_attributions=True),
            }
        ),
    }
    results: dict[str, dict[str, float]] = {}
    for name, cases in pairs.items():
        med = _compare(cases, args.repeats, args.warmup, device)
        results[name] = {
            "ours_images_per_s": n / med["ours"],
            "ours_map_images_per_s": n / med["ours_map"],
            "captum_images_per_s": n / med["captum"],
            "ratio_vs_captum": med["captum"] / med["ours"],
            "ratio_map_vs_captum": med["captum"] / med["ours_map"],
        }

    mask = Mask(steps=args.mask_steps, seed=0)
    xm = torch.rand(args.mask_batch, 3, 32, 32, device=device)
    with torch.no_grad():
        ym = model(xm).argmax(1)
    med = _compare(
        {
            "batched": lambda: mask.optimize(model, xm, ym),
            "loop": lambda: [
                mask.optimize(model, xm[i : i + 1], ym[i : i + 1]) for i in range(len(xm))
            ],
        },
        args.mask_repeats,
        1,
        device,
    )
    results["mask"] = {
        "batch": args.mask_batch,
        "steps": args.mask_steps,
        "batched_images_per_s": args.mask_batch / med["batched"],
        "loop_images_per_s": args.mask_batch / med["loop"],
        "ratio_batched_vs_loop": med["loop"] / med["batched"],
    }

    import captum

    payload = {
        "benchmark": "interpreters",
        "model": "resnet-small depth 8 width 16, 3x32x32, random weights, eval mode",
        "batch_size": n,
        "ig_steps": args.ig_steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": str(device),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "targets": {
            "ratio_vs_captum": ">= 1.0 (saliency, integrated_gradients, gradcam)",
            "mask_ratio": ">= 3.0 at batch 64 on CPU",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
