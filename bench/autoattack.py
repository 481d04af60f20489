"""AutoAttack (standard, L∞) in underfire and in torchattacks 3.5.1, side by side (MNIST or a checkpoint).

A ross-cnn is trained briefly on MNIST (``--train`` images, one epoch; cached in
``--cache``), then both libraries attack the same ``--n`` test images at each ε, interleaved
and alternating which goes first so that load on a shared machine hits both alike.
torchattacks' AutoAttack runs its attacks with their default 10 steps: underfire runs
at that budget (``steps=10``, the fair timing comparison) and at the paper's 100 steps.
Reported per ε: robust accuracy, wall time, and the per-attack record of underfire's run;
with the machine's load average (a shared machine: timings are noisy).

    python bench/autoattack.py                    # n=100, ε = 0.1, 0.2
    python bench/autoattack.py --n 50 --eps 0.1 --repeats 1
    python bench/autoattack.py --dataset cifar10 --root DATA --eps 0.0039,0.0078,0.0314 \
        --checkpoint runs/zhang2020-cifar10-cpu/models/resnet-small.pt --out bench/results/autoattack-cifar10.json

Writes bench/results/autoattack.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from underfire.attacks import AutoAttack
from underfire.data import load_dataset
from underfire.models import model_for_dataset
from underfire.robustness import collect_data
from underfire.train import TrainConfig, Trainer


def mnist_model(root: str, n_train: int, cache: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    model = model_for_dataset("ross-cnn", "mnist", hidden=128)
    if cache.exists():
        model.load_state_dict(torch.load(cache, weights_only=True))
    else:
        x, y = collect_data(load_dataset("mnist", "train", root=root), n_train)
        data = torch.utils.data.TensorDataset(x, y)
        Trainer(model, config=TrainConfig(epochs=1, batch_size=64, lr=2e-3, seed=0)).fit(data)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)
    return model.eval()


def checkpoint_model(path: Path) -> torch.nn.Module:
    """A trained classifier from an underfire checkpoint (e.g. a study's ``OUT/models``)."""
    from underfire.checkpoint import load_checkpoint

    return load_checkpoint(path).model.eval()


def robust(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def compare(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, reps: int):
    import torchattacks

    runs: dict[str, list[float]] = {"torchattacks": [], "underfire_steps10": []}
    acc: dict[str, float] = {}
    record: dict[str, int] = {}
    for rep in range(reps):
        order = ["torchattacks", "underfire_steps10"]
        for who in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            if who == "torchattacks":
                ref = torchattacks.AutoAttack(model, norm="Linf", eps=eps, n_classes=10, seed=0)
                adv = ref(x, y)
            else:
                ours = AutoAttack(eps=eps, steps=10, seed=0)
                adv = ours(model, x, y)
                record = dict(Counter(ours.broken_by_))
            runs[who].append(time.perf_counter() - start)
            acc[who] = robust(model, adv, y)
    paper = AutoAttack(eps=eps, steps=100, seed=0)
    start = time.perf_counter()
    adv = paper(model, x, y)
    runs["underfire_steps100"] = [time.perf_counter() - start]
    acc["underfire_steps100"] = robust(model, adv, y)
    return {
        "eps": eps,
        "robust_accuracy": acc,
        "seconds": runs,
        "speedup_steps10": min(runs["torchattacks"]) / min(runs["underfire_steps10"]),
        "broken_by_steps10": record,
        "broken_by_steps100": dict(Counter(paper.broken_by_)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/shared/data")
    parser.add_argument("--n", type=int, default=100, help="test images attacked")
    parser.add_argument("--eps", default="0.1,0.2", help="comma-separated L∞ radii")
    parser.add_argument("--train", type=int, default=20000, help="MNIST training images")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per library")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/underfire-bench/mnist.pt"))
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="attack this trained classifier (an underfire checkpoint) instead of training one",
    )
    parser.add_argument("--dataset", default="mnist", help="the test images (mnist, cifar10)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/autoattack.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint is not None:
        model = checkpoint_model(args.checkpoint)
    else:
        model = mnist_model(args.root, args.train, args.cache)
    x, y = collect_data(load_dataset(args.dataset, "test", root=args.root), args.n)
    rows = []
    load_before = os.getloadavg()
    start = time.perf_counter()
    for eps in (float(e) for e in args.eps.split(",")):
        row = compare(model, x, y, eps, args.repeats)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    result = {
        "command": "python " + " ".join(["bench/autoattack.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.platform(),
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.perf_counter() - start,
        "n": args.n,
        "dataset": args.dataset,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "clean_accuracy": robust(model, x, y),
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
