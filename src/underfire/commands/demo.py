"""`underfire demo`: the main job, an audit on the embedded offline default."""

from __future__ import annotations

import argparse
import time

from underfire.commands._common import (
    add_device,
    add_force,
    add_out,
    device_of,
    invocation,
    positive_int,
    say,
)

#: The demo's sections in order (studies.demo.SECTION_NAMES; a test keeps the two equal).
SECTION_NAMES = ("classifier", "defenses", "attacks", "interpreters", "adv2", "diagnosis")

#: One line for `underfire --help` (read without building the full parser).
HELP = "train and audit a classifier on the embedded digits; write a report"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help=HELP,
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
        "--sections",
        default=None,
        help="comma-separated subset of the report sections to run: " + ", ".join(SECTION_NAMES),
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # run_study holds --out (lock, run records, --force) for the CLI as for the Python API
    from underfire.studies import run_study
    from underfire.studies.demo import STUDY, configure

    t0 = time.perf_counter()
    sections = [s.strip() for s in args.sections.split(",")] if args.sections else None
    config = configure(seed=args.seed, epochs=args.epochs, sections=sections)
    results = run_study(
        STUDY,
        config,
        out=args.out,
        force=args.force,
        device=device_of(args),
        progress=True,
        log=lambda m: say(f"[demo] {m}"),
        command="demo",
        arguments=invocation(args),
    )
    acc = results["classifier"]["test_accuracy"]
    say(
        f"[demo] test accuracy {acc:.2%}; wrote {args.out}/report.html and results.json "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0
