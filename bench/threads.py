"""The thread policy (underfire.core.threads) against its two alternatives, quiet and loaded.

For each workload, time it with one torch thread, with all cores, and with the policy's
choice, first as the machine is ("quiet": nothing started by the bench) and then with two
busy processes beside it ("loaded"), and print the ratio policy / min(one, all): the
target is ≤ 1.2 everywhere. Workloads:

* ``ross``: PGD-10 on a Ross CNN, 256 MNIST-sized images (28×28);
* ``resnet``: PGD-10 on ResNet-50, 8 images of 224×224 (``--quick``: 2 images, 3 steps);
* ``demo``: ``underfire demo`` in a subprocess (``OMP_NUM_THREADS`` 1 / all / unset: the
  policy's choice), only with ``--demo`` (it takes minutes under load). Before the policy
  honoured ``OMP_NUM_THREADS`` (2026-12-06, session 7) the "one" and "all" runs were the
  policy too, so demo ratios measured before then compare the policy with itself.

The machine's load average is recorded before and after: on a shared machine "quiet" is
only as quiet as the others let it be.

    python bench/threads.py --quick
    python bench/threads.py --workloads ross resnet demo --demo

Writes bench/results/threads.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from underfire.attacks import PGD
from underfire.core.threads import choose_threads, cpu_cores, forward_macs
from underfire.models import create_model


@contextmanager
def busy(count: int) -> Iterator[None]:
    """``count`` processes spinning on a core each, ended (by their pid) on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def attack_workload(name: str, quick: bool) -> tuple[Callable[[], None], float]:
    """(a call running PGD on the workload's model, its forward MACs per batch)."""
    torch.manual_seed(0)
    if name == "ross":
        model = create_model("ross-cnn", in_channels=1, input_size=28, num_classes=10).eval()
        x = torch.rand(256, 1, 28, 28)
        steps = 10
    else:
        model = create_model("resnet50").eval()
        x = torch.rand(2 if quick else 8, 3, 224, 224)
        steps = 3 if quick else 10
    with torch.no_grad():
        y = model(x).argmax(1)
    attack = PGD(eps=8 / 255, step_size=2 / 255, steps=steps, seed=0)
    return (lambda: attack(model, x, y)), forward_macs(model, x)


def demo_workload(threads: int | None) -> Callable[[], None]:
    def run() -> None:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "underfire", "demo", "--out", out]
            env = dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
            if threads is not None:
                env["OMP_NUM_THREADS"] = str(threads)
            subprocess.run(cmd, check=True, env=env, capture_output=True)

    return run


def time_it(fn: Callable[[], None], threads: int | None, repeats: int) -> float:
    if threads is not None:
        torch.set_num_threads(threads)
    fn()  # warm-up (allocations, lazy imports)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, quick: bool, repeats: int, loaded: bool) -> dict[str, Any]:
    cores = cpu_cores()
    if name == "demo":
        policy = None  # the command chooses itself
        fns = {k: demo_workload(t) for k, t in (("one", 1), ("all", cores), ("policy", None))}
        threads = {"one": None, "all": None, "policy": None}
    else:
        fn, macs = attack_workload(name, quick)
        policy = choose_threads(macs)
        fns = {"one": fn, "all": fn, "policy": fn}
        threads = {"one": 1, "all": cores, "policy": policy}
    seconds = {k: time_it(fns[k], threads[k], repeats) for k in ("one", "all", "policy")}
    ratio = seconds["policy"] / min(seconds["one"], seconds["all"])
    return {"seconds": seconds, "policy_threads": policy, "ratio": ratio, "loaded": loaded}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=["ross", "resnet"])
    p.add_argument("--demo", action="store_true", help="also the demo (minutes under load)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results/threads.json")
    args = p.parse_args()
    workloads = list(args.workloads) + (
        ["demo"] if args.demo and "demo" not in args.workloads else []
    )
    result: dict[str, Any] = {
        "cores": cpu_cores(),
        "load_average_before": os.getloadavg(),
        "runs": [],
    }
    for loaded in (False, True):
        with busy(2) if loaded else _nothing():
            for name in workloads:
                r = measure(name, args.quick, args.repeats, loaded)
                r["workload"] = name
                result["runs"].append(r)
                s = r["seconds"]
                print(
                    f"{name:7s} {'loaded' if loaded else 'quiet ':6s} one {s['one']:.2f} s, all "
                    f"{s['all']:.2f} s, policy ({r['policy_threads']}) {s['policy']:.2f} s: "
                    f"policy / best = {r['ratio']:.2f}",
                    flush=True,
                )
    result["load_average_after"] = os.getloadavg()
    result["worst_ratio"] = max(r["ratio"] for r in result["runs"])
    print(f"worst policy / best: {result['worst_ratio']:.2f} (target ≤ 1.2)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    main()
