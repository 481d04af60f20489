"""Cost of ADV² (Zhang et al., USENIX Security 2020): one ADV²-GRAD step against one PGD step.

An ADV²-GRAD step differentiates the gradient map, i.e. it backpropagates through a backward
pass (double backpropagation) with the ReLU backward smoothed. Three variants on the same
model and batch, run interleaved (so load on a shared machine hits all alike), median time:

* ``pgd``: forward + backward of the cross-entropy (one PGD step);
* ``adv2_naive``: the ADV² step with the smooth ReLU backward written as differentiable
  PyTorch ops (autograd records ~6 nodes per ReLU and differentiates them) and PyTorch's own
  batch norm (the state before this benchmark's work);
* ``adv2``: underfire's step (:func:`underfire.attacks.adv2.joint_loss_gradient`) inside
  :func:`underfire.attacks.adv2.attack_patches`, exactly as ``ADV2`` runs it: the smooth ReLU
  backward as one autograd function with a closed-form double backward (h(z) computed once
  per forward), evaluation-mode batch norm as one fused affine op, and frozen convolutions
  whose double backward skips PyTorch's unused weight term.

Each call is timed by the wall clock and by this process's CPU time (``time.process_time``,
less sensitive to other jobs on a shared machine); both ratios are reported, with the load
average before and after.

Then the time per image of a whole ADV² call per interpreter (the "small" preset on 8×8
digits-sized inputs, random weights: the cost does not depend on them).

    python bench/adv2.py                  # ross-cnn @32 (28×28), resnet50 @2 (224×224)
    python bench/adv2.py --quick          # fewer repeats
    python bench/adv2.py --threads 2 --device cuda

Writes bench/results/adv2.json (or --out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks import ADV2
from underfire.attacks.adv2 import attack_patches, joint_loss_gradient
from underfire.core.autograd.smooth_relu import smooth_relu_derivative
from underfire.core.state import model_state
from underfire.interpreters import (
    Ensemble,
    IntegratedGradients,
    Mask,
    Saliency,
    SmoothGrad,
    create_interpreter,
)
from underfire.interpreters.mask import MaskWarning
from underfire.models import create_model, model_for_dataset

TAU = 1e-4


class _NaiveFunction(torch.autograd.Function):
    """The smooth ReLU as first written: backward = g·h(z) in differentiable torch ops."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return g * smooth_relu_derivative(z, TAU)


class _NaiveReLU(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _NaiveFunction.apply(z)


@contextlib.contextmanager
def naive_smooth_relu(model: nn.Module) -> Iterator[nn.Module]:
    swapped = []
    for parent in model.modules():
        for name, child in list(parent._modules.items()):
            if isinstance(child, nn.ReLU):
                swapped.append((parent, name, child))
                parent._modules[name] = _NaiveReLU()
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            parent._modules[name] = child


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_ratio(name: str, batch: int, repeats: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    if name == "ross-cnn":
        model, side, ch, pool = create_model(name, input_size=28, in_channels=1), 28, 1, 1
    else:
        model, side, ch, pool = create_model(name), 224, 3, 4
    model = model.to(device).eval()
    x = torch.rand(batch, ch, side, side, device=device)
    with torch.no_grad():
        t = (model(x).argmax(1) + 1) % model(x).shape[1]
    interp = Saliency()
    m_t = interp(model, x, t).detach()

    def pgd() -> torch.Tensor:
        xg = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xg), t, reduction="sum")
        return torch.autograd.grad(loss, xg)[0]

    def adv2(naive: bool) -> torch.Tensor:
        ctx = naive_smooth_relu(model) if naive else attack_patches(model, True)
        with ctx:
            return joint_loss_gradient(model, interp, x, t, m_t, 0.01, distance="sse", pool=pool)[0]

    fns = {
        "pgd": pgd,
        "adv2_naive": lambda: adv2(True),
        "adv2": lambda: adv2(False),
    }
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    with model_state(model):
        g_fast, g_naive = fns["adv2"](), fns["adv2_naive"]()  # warm-up and agreement
        agree = float((g_fast - g_naive).abs().max() / g_naive.abs().max().clamp_min(1e-30))
        fns["pgd"]()
        for r in range(repeats):
            order = list(fns) if r % 2 == 0 else list(reversed(fns))
            for k in order:
                sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                fns[k]()
                sync(device)
                times[k].append(time.perf_counter() - start)
                cpu[k].append(time.process_time() - start_cpu)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "model": name,
        "batch": batch,
        "input": [ch, side, side],
        "seconds_median": med,
        "seconds_min": {k: min(v) for k, v in times.items()},
        "ratio_adv2_over_pgd": med["adv2"] / med["pgd"],
        "ratio_naive_over_pgd": med["adv2_naive"] / med["pgd"],
        "ratio_min_adv2_over_pgd": min(times["adv2"]) / min(times["pgd"]),
        "ratio_min_naive_over_pgd": min(times["adv2_naive"]) / min(times["pgd"]),
        "cpu_seconds_median": med_cpu,
        "cpu_ratio_adv2_over_pgd": med_cpu["adv2"] / med_cpu["pgd"],
        "cpu_ratio_naive_over_pgd": med_cpu["adv2_naive"] / med_cpu["pgd"],
        "cpu_ratios_per_repeat": [a / p for a, p in zip(cpu["adv2"], cpu["pgd"], strict=True)],
        "gradient_relative_difference_fast_vs_naive": agree,
        "repeats": repeats,
    }


def per_interpreter(batch: int, device: torch.device) -> dict[str, Any]:
    """Seconds per image of a whole ADV² call (small preset: 20 PGD + 120 joint steps)."""
    from underfire.attacks import PGD

    torch.manual_seed(0)
    x = torch.rand(batch, 1, 8, 8, device=device)
    rows: dict[str, Any] = {}
    cases = {
        "pgd (140 steps, reference)": None,
        "grad": Saliency(),
        "smoothgrad": SmoothGrad(samples=8, seed=0),
        "ig": IntegratedGradients(steps=8),
        "gradcam": create_interpreter("gradcam"),
        "cam": create_interpreter("cam"),
        "mask": Mask(steps=100),
        "ensemble": Ensemble(["grad", "gradcam"]),
    }
    for key, interp in cases.items():
        arch = "resnet-small" if key == "cam" else "ross-cnn"
        torch.manual_seed(0)
        model = model_for_dataset(arch, "digits").to(device).eval()
        with torch.no_grad():
            y = model(x).argmax(1)
        if interp is None:
            attack: Any = PGD(eps=0.3, step_size=0.01, steps=140, random_start=False)
        else:
            attack = ADV2(interp, preset="small", eps=0.3, step_size=0.01)
        sync(device)
        start = time.perf_counter()
        with warnings.catch_warnings():  # random weights: MASK's "no deletion" is expected
            warnings.simplefilter("ignore", MaskWarning)
            attack(model, x, y, target="next")
        sync(device)
        sec = time.perf_counter() - start
        rows[key] = {"model": arch, "seconds_per_image": sec / batch, "batch": batch}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ross-cnn", "resnet50"])
    parser.add_argument(
        "--batch", type=int, default=None, help="default 32 (ross-cnn), 2 (resnet50)"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-interpreters", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "adv2.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 3 if args.quick else args.repeats
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "what": "ADV²-GRAD step vs PGD step (same model, batch); ADV² seconds per image per interpreter",
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "cpus": os.cpu_count(),
        },
        "load_average_before": os.getloadavg(),
        "steps": [],
    }
    for name in args.models:
        batch = args.batch or (32 if name == "ross-cnn" else 2)
        row = step_ratio(name, batch, repeats, device)
        result["steps"].append(row)
        print(
            f"{name} @{batch}: ADV² step / PGD step = {row['ratio_adv2_over_pgd']:.2f}× wall, "
            f"{row['cpu_ratio_adv2_over_pgd']:.2f}× CPU time (naive smooth ReLU: "
            f"{row['ratio_naive_over_pgd']:.2f}× / {row['cpu_ratio_naive_over_pgd']:.2f}×)",
            flush=True,
        )
    if not args.skip_interpreters:
        result["per_interpreter"] = per_interpreter(8, device)
        for k, v in result["per_interpreter"].items():
            print(f"  {k}: {v['seconds_per_image'] * 1000:.0f} ms/image", flush=True)
    result["load_average_after"] = os.getloadavg()
    result["wall_seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
