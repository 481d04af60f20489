"""Throughput of underfire's interpreters against Captum, and batched MASK against a loop.

Same model, inputs and targets for both sides, timed in the same run with the calls
interleaved (so machine load hits both alike) and the median of ``--repeats`` kept:

* Saliency, IntegratedGradients, GradCAM (``attribute``, i.e. the native attribution that Captum
  also returns, and ``__call__``, the normalized map) vs ``captum.attr.Saliency``,
  ``IntegratedGradients`` and ``LayerGradCam``: images/s and the ratio ours / Captum
  (target ≥ 1.0);
* MASK optimizing the masks of a batch of 64 at once vs the same algorithm run one image at a
  time (``Mask.optimize`` on each image), on the Ross CNN at digits size (1×8×8) and MNIST
  size (1×28×28) and on resnet-small (3×32×32), all with random weights in eval mode
  (target ≥ 10×).

Writes ``bench/results/interpreters.json``.

    python bench/interpreters.py [--batch-size 32] [--repeats 15] [--threads 1] [--device cpu]
    python bench/interpreters.py --mask-only     # only the MASK part
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from underfire.interpreters import GradCAM, IntegratedGradients, Mask, Saliency
from underfire.models import create_model, get_layer


def _timed(fn: Callable[[], object], device: torch.device, clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock() - t0


def _compare(
    cases: dict[str, Callable[[], object]],
    repeats: int,
    warmup: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median time per case, the cases interleaved. ``clock``: wall time (default) or
    ``time.process_time`` (this process's CPU time: steadier on a machine shared with other
    jobs, meaningful on CPU only)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(_timed(fn, device, clock))
    return {name: statistics.median(ts) for name, ts in times.items()}


def _mask_models(device: torch.device) -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    """The models MASK is timed on: Ross CNN at digits and MNIST size, resnet-small 32×32."""
    torch.manual_seed(0)
    return [
        ("ross-cnn-digits-1x8x8", create_model("ross-cnn", input_size=8), (1, 8, 8)),
        ("ross-cnn-mnist-1x28x28", create_model("ross-cnn", input_size=28), (1, 28, 28)),
        (
            "resnet-small-3x32x32",
            create_model(
                "resnet-small", depth=8, width=16, in_channels=3, input_size=32, num_classes=10
            ),
            (3, 32, 32),
        ),
    ]


def _bench_mask(
    model: torch.nn.Module, shape: tuple[int, ...], args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """Batched ``Mask.optimize`` on a batch vs the same call image by image (wall time, and
    on CPU also this process's CPU time)."""
    model = model.to(device).eval()
    mask = Mask(steps=args.mask_steps, seed=0)
    x = torch.rand(args.mask_batch, *shape, device=device)
    with torch.no_grad():
        y = model(x).argmax(1)
    cases = {
        "batched": lambda: mask.optimize(model, x, y),
        "loop": lambda: [mask.optimize(model, x[i : i + 1], y[i : i + 1]) for i in range(len(x))],
    }
    med = _compare(cases, args.mask_repeats, 1, device)
    out = {
        "batch": args.mask_batch,
        "steps": args.mask_steps,
        "batched_seconds": med["batched"],
        "loop_seconds": med["loop"],
        "batched_images_per_s": args.mask_batch / med["batched"],
        "loop_images_per_s": args.mask_batch / med["loop"],
        "ratio_batched_vs_loop": med["loop"] / med["batched"],
    }
    if device.type == "cpu":
        cpu = _compare(cases, args.mask_repeats, 0, device, clock=time.process_time)
        out |= {
            "batched_cpu_seconds": cpu["batched"],
            "loop_cpu_seconds": cpu["loop"],
            "ratio_batched_vs_loop_cpu_time": cpu["loop"] / cpu["batched"],
        }

    # The ceiling for batching: the model's own cost per MASK step (forward + input-gradient
    # backward of the class probability) on the whole batch vs image by image, the same number
    # of steps. Every MASK step is one such call plus a few small mask operations.
    def model_gradient(xb: torch.Tensor, yb: torch.Tensor) -> None:
        xi = xb.detach().requires_grad_(True)
        prob = model(xi).log_softmax(1).gather(1, yb[:, None]).exp()
        torch.autograd.grad(prob.sum(), xi)

    steps = args.mask_steps
    model_cases = {
        "batched": lambda: [model_gradient(x, y) for _ in range(steps)],
        "loop": lambda: [
            model_gradient(x[i : i + 1], y[i : i + 1]) for i in range(len(x)) for _ in range(steps)
        ],
    }
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    bound = _compare(model_cases, args.mask_repeats, 1, device, clock=clock)
    out |= {
        "model_gradient_batched_seconds": bound["batched"],
        "model_gradient_loop_seconds": bound["loop"],
        "model_gradient_ratio": bound["loop"] / bound["batched"],
        "model_gradient_clock": "cpu" if device.type == "cpu" else "wall",
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--mask-batch", type=int, default=64)
    parser.add_argument("--mask-steps", type=int, default=20)
    parser.add_argument("--mask-only", action="store_true", help="skip the Captum comparisons")
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
    results: dict[str, dict] = {}
    if not args.mask_only:
        from captum.attr import IntegratedGradients as CaptumIG
        from captum.attr import LayerGradCam
        from captum.attr import Saliency as CaptumSaliency

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
        for name, cases in pairs.items():
            med = _compare(cases, args.repeats, args.warmup, device)
            results[name] = {
                "ours_images_per_s": n / med["ours"],
                "ours_map_images_per_s": n / med["ours_map"],
                "captum_images_per_s": n / med["captum"],
                "ratio_vs_captum": med["captum"] / med["ours"],
                "ratio_map_vs_captum": med["captum"] / med["ours_map"],
            }

    load_before = os.getloadavg()
    results["mask"] = {
        name: _bench_mask(model_m, shape, args, device)
        for name, model_m, shape in _mask_models(device)
    }
    load = {"mask_load_average_before": load_before, "mask_load_average_after": os.getloadavg()}

    import captum

    if args.mask_only and args.out.exists():  # keep the Captum figures of the last full run
        previous = json.loads(args.out.read_text())["results"]
        results = {**{k: v for k, v in previous.items() if k != "mask"}, "mask": results["mask"]}
    payload = {
        "benchmark": "interpreters",
        "model": "resnet-small depth 8 width 16, 3x32x32, random weights, eval mode",
        "batch_size": args.batch_size,
        "ig_steps": args.ig_steps,
        "mask": f"Mask(steps={args.mask_steps}) .optimize, batch {args.mask_batch}, "
        f"median of {args.mask_repeats}; loop = the same call per image",
        "repeats": args.repeats,
        "threads": args.threads,
        "device": str(device),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        **load,
        "targets": {
            "ratio_vs_captum": ">= 1.0 (saliency, integrated_gradients, gradcam)",
            "mask_ratio": ">= 10 (batched over per-image loop, batch 64)",
        },
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
