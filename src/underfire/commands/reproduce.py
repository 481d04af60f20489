"""`underfire reproduce STUDY`: rerun a paper's experiments end to end and write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from underfire.commands._common import (
    add_device,
    add_force,
    device_of,
    guarded_output,
    positive_float,
    positive_int,
    say,
)

STUDIES = ("ross2018",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce a paper's experiments (ross2018) and write results and a report",
        description="Reproduce a study end to end: train every model (resumable: trained models in OUT/models are "
        "reused), run the attacks, decide the paper's claims and write results.json, config.json, "
        "figures, report.md and report.html to --out.",
    )
    p.add_argument(
        "study",
        choices=STUDIES,
        help="ross2018: Ross & Doshi-Velez, AAAI 2018 (input-gradient regularization)",
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        help="mnist, notmnist, digits, svhn or fashion-mnist (default: mnist)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $UNDERFIRE_DATA or ./data)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the quick CPU profile (minutes; use with --dataset digits)",
    )
    p.add_argument(
        "--profile", default=None, help="full (paper), cpu, quick or test; overrides --quick"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/STUDY-DATASET)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="training steps per model (overrides the profile)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="training batch size (overrides the profile)",
    )
    p.add_argument(
        "--n-eval",
        type=positive_int,
        default=None,
        help="test images attacked (overrides the profile)",
    )
    p.add_argument(
        "--paper-lambda",
        type=positive_float,
        default=None,
        help="gradient-regularization λ in the paper's convention",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="ross2018: train and compare only these models (must include normal and gradreg)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is much faster on a busy, shared CPU)",
    )
    add_force(
        p,
        "replace the results of a different reproduction already in --out (trained models "
        "with other settings must still be deleted by hand)",
    )
    add_device(p)
    p.set_defaults(func=run)


_RESULTS = ("results.json", "config.json", "report.html", "report.md")


def run(args: argparse.Namespace) -> int:
    from underfire.experiments.ross2018 import run_ross2018

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    profile = args.profile or ("quick" if args.quick else "full")
    out = args.out = args.out or Path("runs") / f"{args.study}-{args.dataset}"
    with guarded_output(args, "reproduce", _RESULTS):
        t0 = time.perf_counter()
        results = run_ross2018(
            args.dataset,
            profile=profile,
            out=out,
            data_root=args.data_root,
            device=device_of(args),
            progress=True,
            log=lambda m: say(f"[reproduce] {m}"),
            seed=args.seed,
            steps=args.steps,
            batch_size=args.batch_size,
            n_eval=args.n_eval,
            paper_lambda=args.paper_lambda,
            models=args.models,
        )
        for c in results["claims"]:
            verdict = {True: "held", False: "did not hold", None: "not evaluated"}[c["held"]]
            print(f"claim {c['id']}: {verdict} — {c['claim']}")
        say(
            f"[reproduce] wrote {out}/report.html, results.json and config.json in {time.perf_counter() - t0:.1f} s"
        )
    return 0
