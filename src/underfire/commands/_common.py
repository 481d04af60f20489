"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from underfire.core.validation import resolve_device


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)"
    )


def add_out(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path(default), help=f"output folder (default: {default})"
    )


def add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $UNDERFIRE_DATA or ./data)",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="download the dataset through torchvision if missing",
    )


def device_of(args: argparse.Namespace) -> torch.device:
    return resolve_device(args.device)


def checkpoint_and_data(args: argparse.Namespace, split: str):
    """Load ``args.checkpoint`` on the chosen device and the split it is evaluated on.

    The dataset is ``args.dataset`` or the one the checkpoint records, with the checkpoint's
    data seed, so the test split is the one held out during its training.
    Returns ``(checkpoint, dataset_name, data)``.
    """
    from underfire.checkpoint import load_checkpoint
    from underfire.cli import CommandError
    from underfire.data import load_dataset

    ckpt = load_checkpoint(args.checkpoint, device_of(args))
    dataset = getattr(args, "dataset", None) or ckpt.meta.get("dataset")
    if not dataset:
        raise CommandError(f"{args.checkpoint} does not record its dataset; pass --dataset")
    data = load_dataset(
        dataset,
        split,
        args.data_root,
        download=args.download,
        seed=int(ckpt.meta.get("data_seed", 0)),
    )
    return ckpt, dataset, data


def float_list(text: str) -> list[float]:
    """'0.1,0.2,0.3' → [0.1, 0.2, 0.3] (an argparse type)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.1,0.2, got {text!r}"
        ) from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from err
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def say(message: str) -> None:
    """Progress messages go to stderr so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


def print_table(rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    numeric = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in cols]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=False)
        ).rstrip()

    print(line(cols))
    for row in cells:
        print(line(row))


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
