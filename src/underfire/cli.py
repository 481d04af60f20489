"""The `underfire` command: parse arguments, build from registries, call library functions."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from underfire._version import __version__

# Each module in underfire.commands adds one subcommand through register(subparsers).
COMMANDS = [
    "demo",
    "train",
    "evaluate",
    "attack",
    "datasets",
    "reproduce",
    "explain",
    "train_rts",
    "audit",
]


class CommandError(Exception):
    """A user error found by a command (bad argument combination); printed without traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="underfire",
        description="Security of interpretable deep learning systems: attack, explain, defend, diagnose, reproduce.",
    )
    parser.add_argument("--version", action="version", version=f"underfire {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"underfire.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from underfire.core.errors import CheckpointError
    from underfire.data import DatasetNotFoundError

    try:
        return int(args.func(args) or 0)
    except (
        CommandError,
        CheckpointError,
        DatasetNotFoundError,
        FileNotFoundError,
        ValueError,
        KeyError,
        TypeError,
    ) as err:
        message = str(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])
        print(f"underfire {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"underfire {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
