"""Clean accuracy along a short training of one Ross & Doshi-Velez model (a cheap check).

Trains one model of the reproduction exactly as ``underfire reproduce ross2018`` would (its
objective, initialization, seed and batches, from :func:`resolve_config`) and evaluates it in
evaluation mode on the first ``--n-test`` test images every ``--every`` steps. This is the
300-step check of issue 22 (paper-cpu settings: batch 256, Adam lr 2e-4, the paper's λ):
whether a model rises like gradreg or settles in the flat-logit basin shows within 300 steps.
Writes a JSON line per evaluation to stdout and the whole run to ``--out`` (with the load
average before and after: the development machine is shared, seconds are not comparable).

    python bench/ross2018_trajectory.py --model both --data-root DATA [--steps 300]
        [--every 50] [--n-test 2000] [--init paper|torch] [--paper-lambda L]
        [--insensitive-lambda L] [--threads 1] [--out FILE]
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

from underfire.models import model_for_dataset
from underfire.studies.ross2018 import resolve_config
from underfire.studies.ross2018.config import EXTRA_MODELS, MODEL_NAMES
from underfire.studies.ross2018.training import load_data, objective_for
from underfire.train import TrainConfig, Trainer, evaluate, seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = [m for m in MODEL_NAMES + EXTRA_MODELS if m != "distilled"]
    parser.add_argument("--model", choices=models, required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--profile", default="paper-cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--init", choices=["paper", "torch"], default=None)
    parser.add_argument("--paper-lambda", type=float, default=None)
    parser.add_argument("--insensitive-lambda", type=float, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = resolve_config(
        args.dataset,
        args.profile,
        steps=args.steps,
        init=args.init,
        paper_lambda=args.paper_lambda,
        insensitive_lambda=args.insensitive_lambda,
    )
    train, _val, test = load_data(cfg, args.data_root)
    test = test.subset(args.n_test)
    seed_everything(cfg.seed)  # the reproduction's initialization (same seed for every model)
    model = model_for_dataset("ross-cnn", cfg.dataset, hidden=cfg.hidden, init=cfg.init)
    objective = objective_for(args.model, cfg)
    trajectory: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def on_step(step: int, loss: float) -> None:
        if step % args.every == 0 or step == cfg.steps:
            accuracy = evaluate(model, test)["accuracy"]  # eval mode, restored after
            trajectory.append(
                {
                    "step": step,
                    "accuracy": round(accuracy, 4),
                    "loss": round(loss, 4),
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(json.dumps(trajectory[-1]), flush=True)

    load_before = os.getloadavg()
    tcfg = TrainConfig(
        steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, checkpoint_every=10**6
    )
    Trainer(model, objective, tcfg, on_step=on_step).fit(train)
    run = {
        "model": args.model,
        "objective": objective.config() if hasattr(objective, "config") else None,
        "config": cfg.to_dict(),
        "n_test": len(test),
        "trajectory": trajectory,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time(), 1),
        "threads": args.threads,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(run, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
