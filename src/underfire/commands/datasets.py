"""`underfire datasets`: list datasets and whether they are available locally."""

from __future__ import annotations

import argparse

from underfire.commands._common import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("datasets", help="list datasets and which are available locally")
    p.add_argument(
        "--data-root",
        default=None,
        help="folder holding the datasets (default: $UNDERFIRE_DATA or ./data)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from underfire.data import dataset_info, dataset_status

    rows: list[dict[str, object]] = []
    for status in dataset_status(args.data_root):
        info = dataset_info(status.name)
        rows.append(
            {
                "name": status.name,
                "available": "yes" if status.available else "no",
                "shape": "×".join(map(str, info.shape)),
                "classes": info.num_classes,
                "description": status.description,
            }
        )
    print_table(rows)
    return 0
