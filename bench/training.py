"""Cost of a gradient-regularized training step relative to a plain one (same model, same batch).

Ross & Doshi-Velez (AAAI 2018) report double backpropagation at roughly twice the cost of
normal training. This benchmark times full optimizer steps (forward, backward, Adam update)
of :class:`underfire.train.CrossEntropy` and :class:`underfire.defenses.GradientRegularization`
(its certainty-insensitive variant, and, for reference, gradient regularization through
PyTorch's generic batch-norm double backward instead of underfire's closed form) on the paper's CNN with a batch of 256 MNIST-shaped
inputs, interleaving the objectives so machine load affects them alike, and writes
``bench/results/training.json``. Target: ratio ≤ 2.5× on CPU.

    python bench/training.py [--batch-size 256] [--repeats 15] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from underfire.defenses import GradientRegularization, paper_lambda_to_lam
from underfire.models import create_model
from underfire.train import CrossEntropy


def _step_time(
    model: torch.nn.Module, objective, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> float:  # type: ignore[no-untyped-def]
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = objective(model, x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


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
        "--out", type=Path, default=Path(__file__).parent / "results" / "training.json"
    )
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    x = torch.rand(args.batch_size, 1, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    lam = paper_lambda_to_lam(56_234, 256)
    objectives = {
        "plain": CrossEntropy(),
        "gradreg": GradientRegularization(lam),
        "certainty-insensitive": GradientRegularization(lam, certainty_insensitive=True),
        "gradreg-generic-batchnorm": GradientRegularization(lam, fast_batch_norm=False),
    }
    setups = {}
    for name in objectives:
        torch.manual_seed(0)
        model = create_model("ross-cnn", input_size=args.size).to(device).train()
        setups[name] = (model, torch.optim.Adam(model.parameters(), lr=2e-4))
    times: dict[str, list[float]] = {name: [] for name in objectives}
    for i in range(args.warmup + args.repeats):
        for name, objective in objectives.items():  # interleaved: load drifts hit all alike
            model, opt = setups[name]
            t = _step_time(model, objective, opt, x, y)
            if i >= args.warmup:
                times[name].append(t)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "benchmark": "training step time, gradient regularization vs plain cross-entropy",
        "model": "ross-cnn (Ross & Doshi-Velez 2018)",
        "input": [1, args.size, args.size],
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "median_seconds": median,
        "all_seconds": times,
        "ratio_gradreg_over_plain": median["gradreg"] / median["plain"],
        "ratio_certainty_insensitive_over_plain": median["certainty-insensitive"] / median["plain"],
        "ratio_gradreg_generic_batchnorm_over_plain": median["gradreg-generic-batchnorm"]
        / median["plain"],
        "target_ratio": 2.5,
    }
    result["within_target"] = result["ratio_gradreg_over_plain"] <= result["target_ratio"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "all_seconds"}, indent=2))


if __name__ == "__main__":
    main()
