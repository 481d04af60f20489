"""`underfire train-rts`: train the RTS masking network (Dabkowski & Gal 2017) for a classifier."""

from __future__ import annotations

import argparse
import json

from underfire.commands._common import (
    add_checkpoint,
    add_data,
    add_device,
    add_force,
    add_out,
    checkpoint_and_data,
    device_of,
    finite_float,
    guarded_output,
    positive_float,
    positive_int,
    say,
)

#: One line for `underfire --help` (read without building the full parser).
HELP = "train a real-time saliency (RTS) masking network for a classifier checkpoint"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-rts",
        help=HELP,
        description="Train the RTS masking network of a classifier on its dataset with the objective of "
        "Dabkowski & Gal (2017); writes OUT/rts.pt (loads with weights_only) and OUT/rts.json "
        "(training history and preserved-region statistics on the test split).",
    )
    add_checkpoint(p)
    p.add_argument(
        "--steps", type=positive_int, default=1500, help="optimizer steps (default: 1500)"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument(
        "--area", type=finite_float, default=1.0, help="λ₂, weight of the mask area (default: 1.0)"
    )
    p.add_argument(
        "--tv",
        type=finite_float,
        default=0.05,
        help="λ₁, weight of total variation (default: 0.05)",
    )
    p.add_argument("--width", type=positive_int, default=64, help="decoder channels (default: 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-n",
        type=positive_int,
        default=1000,
        help="test images for the statistics (default: 1000; fewer when the split is smaller)",
    )
    add_data(p)
    add_out(p, "runs/rts")
    add_force(p, "replace the results of a different run already in --out")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from underfire.core import io as _io
    from underfire.core.errors import CommandError
    from underfire.data import ImageDataset, load_dataset
    from underfire.interpreters import RTSConfig, evaluate_rts, train_rts

    device = device_of(args)
    ckpt, dataset, train = checkpoint_and_data(args, "train")
    test = load_dataset(dataset, "test", args.data_root, seed=int(ckpt.meta.get("data_seed", 0)))
    if not isinstance(train, ImageDataset):
        raise CommandError(
            f"train-rts needs an in-memory dataset; {dataset} is read from disk per image"
        )
    config = RTSConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        area=args.area,
        tv=args.tv,
        width=args.width,
        seed=args.seed,
    )
    with guarded_output(args, "train-rts", ("rts.pt", "rts.json")) as out:
        say(f"train-rts: {args.steps} steps on {dataset} ({len(train)} images)")
        rts, history = train_rts(ckpt.model, train, config, device=device, progress=True)
        rts.meta |= {"classifier_checkpoint": str(args.checkpoint), "dataset": dataset}
        path = rts.save(out / "rts.pt")
        n = min(args.eval_n, len(test))
        stats = {}
        if n:
            x = (
                test.x[:n].to(device)
                if isinstance(test, ImageDataset)
                else torch.stack([test[i][0] for i in range(n)]).to(device)
            )
            stats = evaluate_rts(rts, ckpt.model, x)
        summary = {
            "rts_checkpoint": str(path),
            "classifier": str(args.checkpoint),
            "dataset": dataset,
            "config": rts.meta["config"],
            "seconds": round(rts.meta["seconds"], 2),
            "test": stats,
            "history": history,
        }
        _io.write_json(out / "rts.json", summary)
        print(json.dumps({"rts_checkpoint": str(path), "test": stats}, indent=2))
    return 0
