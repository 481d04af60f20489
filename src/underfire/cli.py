"""The `underfire` command: parse arguments, build from registries, call library functions."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import NoReturn

from underfire._version import __version__

# Re-exported for code written before it moved to underfire.core.errors.
from underfire.core.errors import CommandError

__all__ = ["CommandError", "build_parser", "main"]

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
    "train_interpretgan",
    "diagnose",
    "audit",
    "study",
]


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser(only: str | None = "*") -> argparse.ArgumentParser:
    """The CLI parser.

    Args:
        only: the command whose full parser is built ("*": all of them; None: none). The
            others get a one-line placeholder from their module's ``HELP``, so that
            ``underfire --help`` and ``underfire demo --help`` do not import what every
            other command needs (torch, for listing defenses).
    """
    parser = _Parser(
        prog="underfire",
        description="Security of interpretable deep learning systems: attack, explain, defend, diagnose, reproduce.",
    )
    parser.add_argument("--version", action="version", version=f"underfire {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"underfire.commands.{name}")
        if only == "*" or only == _cli_name(name):
            module.register(subparsers)
        else:
            subparsers.add_parser(_cli_name(name), help=module.HELP)
    return parser


def _cli_name(module: str) -> str:
    return module.replace("_", "-")


def _apply_threads(threads: int | None) -> None:
    """``--threads N`` fixes torch's threads for the whole command; without it, one thread
    when the machine is loaded (jobs that know their size choose again, see
    :mod:`underfire.core.threads`)."""
    import torch

    from underfire.core.threads import choose_threads, set_override

    set_override(threads)
    torch.set_num_threads(choose_threads())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors become one line on stderr and exit status 2.

    Errors from the user's input (:class:`~underfire.core.errors.UnderfireError` and the
    built-in ``ValueError``, ``TypeError``, ``KeyError``, ``OSError`` and
    ``FloatingPointError`` that validation raises) are printed as
    ``underfire COMMAND: error: MESSAGE``. Anything else (``AssertionError``,
    ``RuntimeError``, ...) is a bug in underfire and keeps its traceback. Set
    ``UNDERFIRE_TRACEBACK=1`` to see the traceback of a user error too.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    known = {_cli_name(n) for n in COMMANDS}
    parser = build_parser(command if command in known else None if command is None else "*")
    args = parser.parse_args(words)
    args.argv = argv
    from underfire.core.errors import UnderfireError

    def one_line(message: object) -> str:
        return " ".join(str(message).split())

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"underfire {args.command}: warning: {one_line(message)}", file=sys.stderr)

    previous_showwarning = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        _apply_threads(getattr(args, "threads", None))
        with _process_group(args):
            return int(args.func(args) or 0)
    except (
        CommandError,
        UnderfireError,
        ValueError,
        TypeError,
        KeyError,
        OSError,
        FloatingPointError,
    ) as err:
        if os.environ.get("UNDERFIRE_TRACEBACK"):
            raise
        message = str(err) if not isinstance(err, KeyError) or not err.args else str(err.args[0])
        if isinstance(err, OSError) and not isinstance(err, UnderfireError) and err.filename:
            message = f"{err.strerror or message}: {err.filename}"
        if not getattr(err, "raised_on_rank_0", False):  # rank 0 says it once for all ranks
            print(f"underfire {args.command}: error: {one_line(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"underfire {args.command}: interrupted; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        warnings.showwarning = previous_showwarning


@contextlib.contextmanager
def _process_group(args: argparse.Namespace) -> Iterator[None]:
    """Under ``torchrun`` (``WORLD_SIZE`` set), join the other processes for the command
    (gloo on the CPU, NCCL on CUDA) and leave after it; otherwise nothing (no torch import)."""
    if "WORLD_SIZE" not in os.environ:
        yield
        return
    from underfire.core import distributed
    from underfire.core.validation import resolve_device

    distributed.init(resolve_device(getattr(args, "device", None) or "cpu"))
    try:
        yield
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
