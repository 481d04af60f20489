"""`underfire datasets`: list datasets and whether they are available locally."""

from __future__ import annotations

import argparse

from underfire.commands._common import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "datasets",
        help="list datasets and which are available locally",
        description="List the datasets; the files present are read and checked (headers, sizes, "
        "labels), so a truncated or corrupt copy shows as 'damaged' with the reason.",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="only check that the files exist (fast; does not detect damaged files)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding the datasets (default: $UNDERFIRE_DATA or ./data)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from underfire.data import dataset_info, dataset_status

    rows = []
    problems = []
    for status in dataset_status(args.data_root, verify=not args.no_verify):
        info = dataset_info(status.name)
        if status.problem:
            problems.append(f"{status.name}: {status.problem}")
        rows.append(
            {
                "name": status.name,
                "available": "yes" if status.available else "damaged" if status.problem else "no",
                "shape": "×".join(map(str, info.shape)),
                "classes": info.num_classes,
                "description": status.description,
            }
        )
    print_table(rows)
    for line in problems:
        print(line)
    return 0
