"""`underfire evaluate`: accuracy of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
import json

from underfire.commands._common import (
    add_checkpoint,
    add_data,
    add_device,
    add_threads,
    checkpoint_and_data,
    device_of,
)

#: One line for `underfire --help` (read without building the full parser).
HELP = "accuracy of a checkpoint on a dataset split"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help=HELP,
        description="Load a checkpoint (verified: checksum, schema, finite weights) and print its "
        "accuracy and loss as JSON on a split of its dataset (by default the test split of the "
        "data set it was trained on, with the same seeded split).",
    )
    add_checkpoint(p)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    add_data(p)
    add_device(p)
    add_threads(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from underfire.train import evaluate

    device = device_of(args)
    ckpt, dataset, data = checkpoint_and_data(args, args.split)
    metrics = evaluate(ckpt.model, data, device=device)
    print(
        json.dumps(
            {"checkpoint": str(args.checkpoint), "dataset": dataset, "split": args.split} | metrics,
            indent=2,
        )
    )
    return 0
