"""Cost of a gradient-regularized training step relative to a plain one (same model, same batch).

Ross & Doshi-Velez (AAAI 2018) report double backpropagation at roughly twice the cost of
normal training. This benchmark times full optimizer steps (forward, backward, Adam update)
of :class:`underfire.train.CrossEntropy` and :class:`underfire.defenses.GradientRegularization`
(its certainty-insensitive variant, and, for reference, gradient regularization through
PyTorch's generic batch-norm double backward instead of underfire's closed form) on the paper's CNN with a batch of 256 MNIST-shaped
inputs, interleaving the objectives so machine load affects them alike, and writes
``bench/results/training.json`` with the ratio of medians and the load average of the machine
(the project's machine is shared: compare ratios, not seconds). Target: ratio ≤ 2.0× on CPU.
It also counts each step's convolution and matrix-multiply FLOPs (``gflop_per_step``): their
ratio is the floor an exact double backward can reach on FLOP-bound hardware (2.02× on the
Ross CNN at batch 256: the second convolution runs six times instead of three).

Options that were measured as ways to lower the ratio (docs/ross2018.md has the numbers):
``--channels-last`` (both models in channels-last memory format) and ``--malloc-tuning``
(glibc ``mallopt``: keep freed memory in the heap instead of returning 25 MB activation
buffers to the kernel, which costs a page fault per 4 KiB on the next step).

    python bench/training.py [--batch-size 256] [--repeats 15] [--threads 2] [--channels-last]
        [--malloc-tuning] [--device cpu]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import flop_registry

from underfire.defenses import GradientRegularization, paper_lambda_to_lam
from underfire.models import create_model
from underfire.train import CrossEntropy


def _step_time(
    model: torch.nn.Module, objective, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Wall-clock and process CPU seconds of one optimizer step."""
    if x.is_cuda:
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    loss = objective(model, x, y)
    opt.zero_grad(set_to_none=True)
    # as underfire.train.Trainer does: gradients into the parameters only, not the input leaf
    loss.backward(inputs=[p for g in opt.param_groups for p in g["params"] if p.requires_grad])
    opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


class _FlopCount(TorchDispatchMode):
    """Matrix-multiply and convolution FLOPs of every aten op run under it, backward included.

    ``torch.utils.flop_counter.FlopCounterMode`` cannot be used here: its module hooks fail
    inside ``torch.autograd.grad``, which the gradient penalty calls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:

            def shape(t):  # type: ignore[no-untyped-def]
                return t.shape if isinstance(t, torch.Tensor) else t

            self.total += count(
                *tree_map(shape, args), **tree_map(shape, kwargs), out_val=tree_map(shape, out)
            )
        return out


def step_flops(objective, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:  # type: ignore[no-untyped-def]
    """FLOPs of one training step's loss and parameter gradients (the optimizer update aside)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with _FlopCount() as counter:
        objective(model, x, y).backward(inputs=params)
    model.zero_grad(set_to_none=True)
    return counter.total


def tune_malloc() -> bool:
    """glibc: serve every allocation up to 32 MiB from the heap and never trim it.

    By default glibc hands large blocks (above a dynamic threshold) to ``mmap`` and returns
    them on free, so each training step re-faults its activation buffers page by page.
    Returns False where glibc's ``mallopt`` is unavailable (other C libraries).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 2**20)) and bool(mallopt(m_trim_threshold, 2**30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=28, help="input side (28 = MNIST)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--objectives",
        nargs="+",
        default=None,
        help="subset to time (default: all; plain and gradreg are always timed)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="models and inputs in channels-last format"
    )
    parser.add_argument(
        "--malloc-tuning", action="store_true", help="glibc mallopt: no mmap/trim churn"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "training.json"
    )
    args = parser.parse_args()

    malloc_tuned = tune_malloc() if args.malloc_tuning else False
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.rand(args.batch_size, 1, args.size, args.size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    lam = paper_lambda_to_lam(56_234, 256)
    objectives = {
        "plain": CrossEntropy(),
        "gradreg": GradientRegularization(lam),
        "certainty-insensitive": GradientRegularization(lam, certainty_insensitive=True),
        "gradreg-generic-batchnorm": GradientRegularization(lam, fast_batch_norm=False),
    }
    if args.objectives:
        keep = {"plain", "gradreg", *args.objectives}
        objectives = {k: v for k, v in objectives.items() if k in keep}
    setups = {}
    for name in objectives:
        torch.manual_seed(0)
        model = create_model("ross-cnn", input_size=args.size)
        model = model.to(device, memory_format=fmt).train()
        setups[name] = (model, torch.optim.Adam(model.parameters(), lr=2e-4))
    # the arithmetic floor of the ratio: an exact double backward repeats every convolution
    # of the second layer six times (forward, the input gradient, and the gradients of both
    # through the parameters) where a plain step runs it three times
    torch.manual_seed(0)
    flop_model = create_model("ross-cnn", input_size=args.size).to(device, memory_format=fmt)
    flops = {name: step_flops(obj, flop_model.train(), x, y) for name, obj in objectives.items()}
    times: dict[str, list[float]] = {name: [] for name in objectives}
    cpu: dict[str, list[float]] = {name: [] for name in objectives}
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    for i in range(args.warmup + args.repeats):
        for name, objective in objectives.items():  # interleaved: load drifts hit all alike
            model, opt = setups[name]
            t, c = _step_time(model, objective, opt, x, y)
            if i >= args.warmup:
                times[name].append(t)
                cpu[name].append(c)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    median = {name: statistics.median(ts) for name, ts in times.items()}
    median_cpu = {name: statistics.median(ts) for name, ts in cpu.items()}
    result = {
        "benchmark": "training step time, gradient regularization vs plain cross-entropy",
        "model": "ross-cnn (Ross & Doshi-Velez 2018)",
        "input": [1, args.size, args.size],
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "channels_last": args.channels_last,
        "malloc_tuning": malloc_tuned,
        "load_average_1_5_15_min": {"start": load_start, "end": load_end},
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "median_seconds": median,
        # process CPU time: with one thread on a shared machine, less sensitive to other load
        "median_cpu_seconds": median_cpu,
        "ratio_gradreg_over_plain_cpu": median_cpu["gradreg"] / median_cpu["plain"],
        "all_seconds": times,
        "all_cpu_seconds": cpu,
        "ratio_gradreg_over_plain": median["gradreg"] / median["plain"],
        # interleaved repeats: the ratio within each repeat, then its median (robust to drifts)
        "ratio_gradreg_over_plain_paired_median": statistics.median(
            g / p for g, p in zip(times["gradreg"], times["plain"], strict=True)
        ),
        **{
            f"ratio_{name.replace('-', '_')}_over_plain": median[name] / median["plain"]
            for name in median
            if name not in ("plain", "gradreg")
        },
        "gflop_per_step": {name: round(f / 1e9, 3) for name, f in flops.items()},
        "flop_ratio_gradreg_over_plain": flops["gradreg"] / flops["plain"],
        "target_ratio": 2.0,
    }
    result["within_target"] = result["ratio_gradreg_over_plain"] <= result["target_ratio"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("all_")}, indent=2))


if __name__ == "__main__":
    main()
