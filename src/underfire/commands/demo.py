"""`underfire demo`: the main job, an audit on the embedded offline default."""

from __future__ import annotations

import argparse
import time

from underfire.commands._common import (
    add_device,
    add_force,
    add_out,
    device_of,
    guarded_output,
    positive_int,
    say,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train and audit a classifier on the embedded digits; write a report",
        description="Train a classifier on scikit-learn's bundled digits (offline), attack "
        "and explain it, and write results.json, figures and report.html.",
    )
    add_out(p, "underfire-demo")
    add_force(
        p,
        "replace the report of a different demo run already in --out (a model checkpoint "
        "trained with other settings must still be deleted by hand)",
    )
    add_device(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--epochs", type=positive_int, default=15, help="training epochs (default: 15)")
    p.add_argument(
        "--sections", default=None, help="comma-separated subset of report sections to run"
    )
    p.set_defaults(func=run)


_RESULTS = ("results.json", "report.html", "report.md")


def run(args: argparse.Namespace) -> int:
    from underfire.experiments.demo import run_demo

    t0 = time.perf_counter()
    sections = [s.strip() for s in args.sections.split(",")] if args.sections else None
    with guarded_output(args, "demo", _RESULTS):
        results = run_demo(
            args.out,
            device=device_of(args),
            seed=args.seed,
            epochs=args.epochs,
            sections=sections,
            progress=True,
            log=lambda m: say(f"[demo] {m}"),
        )
        acc = results["classifier"]["test_accuracy"]
        say(
            f"[demo] test accuracy {acc:.2%}; wrote {args.out}/report.html and results.json "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    return 0
