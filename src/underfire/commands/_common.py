"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Arguments that do not change a result: a re-run differing only in these is the same run.
_NOT_PART_OF_THE_RUN = {"func", "force", "device", "argv", "command"}


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


def add_force(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--force", action="store_true", help=what)


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --dataset, what :func:`checkpoint_and_data` reads."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a classifier checkpoint written by `underfire train`",
    )
    parser.add_argument(
        "--dataset", default=None, help="dataset (default: the one the checkpoint was trained on)"
    )


def add_threads(parser: argparse.ArgumentParser) -> None:
    """--threads, applied by the CLI's entry point before the command runs."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: by job size and machine load; 1 on a busy CPU)",
    )


def invocation(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that define a run's result (JSON-able), without device and --force."""
    return {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in sorted(vars(args).items())
        if k not in _NOT_PART_OF_THE_RUN and not callable(v)
    }


@contextlib.contextmanager
def guarded_output(
    args: argparse.Namespace, command: str, results: Sequence[str] = ()
) -> Iterator[Path]:
    """Hold ``args.out`` for this run: :func:`underfire.core.outputs.guard_output` with the
    command's arguments (device and ``--force`` aside) and the CLI's wording."""
    from underfire.core.outputs import guard_output

    with guard_output(
        args.out,
        command=command,
        arguments=invocation(args),
        results=results,
        force=bool(getattr(args, "force", False)),
        argv=" ".join(getattr(args, "argv", None) or [command]),
        cli=True,
    ) as out:
        yield out


def device_of(args: argparse.Namespace) -> torch.device:
    from underfire.core.distributed import local_device
    from underfire.core.validation import resolve_device  # imports torch: only when running

    return local_device(resolve_device(args.device))  # under torchrun: this rank's GPU


def checkpoint_and_data(args: argparse.Namespace, split: str):
    """Load ``args.checkpoint`` on the chosen device and the split it is evaluated on.

    The dataset is ``args.dataset`` or the one the checkpoint records, with the checkpoint's
    data seed, so the test split is the one held out during its training.
    Returns ``(checkpoint, dataset_name, data)``.
    """
    from underfire.checkpoint import check_model_fits_data, load_checkpoint
    from underfire.core.errors import CommandError
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
    check_model_fits_data(ckpt.model, args.checkpoint, dataset, data)
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
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def finite_float(text: str) -> float:
    """A finite number (an argparse type): 'nan' and 'inf' are refused here, at the boundary."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value}")
    return value


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
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number, got {value}")
    return value


def say(message: str) -> None:
    """Progress messages go to stderr so stdout stays parseable (rank 0 only under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
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
