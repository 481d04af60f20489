"""Is a robust accuracy measured with PGD real? AutoAttack on the same checkpoints and images.

A PGD robust accuracy that AutoAttack (Croce & Hein 2020) lowers by much points to gradient
masking or a weak attack; one it leaves nearly unchanged can be believed. For each
checkpoint: clean accuracy, PGD-20 robust accuracy (α = 2.5·ε/20, random start, seeded) and
AutoAttack standard (L∞, ``--steps`` per gradient attack) on the first ``--n`` test images,
with which attack of the sequence broke each point and the wall time.

    OMP_NUM_THREADS=1 python tools/autoattack_vs_pgd.py CKPT... --dataset mnist \\
        --data-root DATA --eps 0.3 --n 100 --out docs/results/zheng2020-mnist-pgd-autoattack.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import torch

from underfire.attacks import PGD, AutoAttack
from underfire.checkpoint import load_checkpoint
from underfire.core import io as _io
from underfire.data import load_dataset
from underfire.metrics import accuracy
from underfire.robustness import collect_data


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return accuracy(model(x), y)


def check(path: Path, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> dict[str, Any]:
    model = load_checkpoint(path).model.eval()
    start = time.perf_counter()
    x_pgd = PGD(eps=eps, step_size=2.5 * eps / 20, steps=20, seed=0)(model, x, y)
    pgd_seconds = time.perf_counter() - start
    aa = AutoAttack(eps=eps, steps=steps, seed=0)
    start = time.perf_counter()
    x_aa = aa(model, x, y)
    aa_seconds = time.perf_counter() - start
    return {
        "checkpoint": str(path),
        "clean": _accuracy(model, x, y),
        "pgd20": _accuracy(model, x_pgd, y),
        "autoattack": _accuracy(model, x_aa, y),
        "broken_by": dict(Counter(aa.broken_by_)),
        "seconds": {"pgd20": round(pgd_seconds, 1), "autoattack": round(aa_seconds, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-root", default=os.environ.get("UNDERFIRE_DATA", "data"))
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--steps", type=int, default=100, help="steps of each gradient attack")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = collect_data(load_dataset(args.dataset, "test", root=args.data_root), args.n)
    rows = []
    for path in args.checkpoints:
        rows.append(check(path, x, y, args.eps, args.steps))
        print(rows[-1], flush=True)
    result = {
        "what": "PGD-20 vs AutoAttack standard (L-inf) robust accuracy on the same images",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "torch": torch.__version__,
        "threads": args.threads,
        "dataset": args.dataset,
        "images": f"the first {args.n} test images",
        "eps": args.eps,
        "autoattack_steps": args.steps,
        "rows": rows,
    }
    _io.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
