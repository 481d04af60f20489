"""`underfire train-interpretgan`: train InterpretGAN generators (Zheng et al. 2020) for a classifier."""

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
    guarded_output,
    positive_float,
    positive_int,
    say,
)

#: One line for `underfire --help` (read without building the full parser).
HELP = "train InterpretGAN generators (one per layer) for a classifier checkpoint"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-interpretgan",
        help=HELP,
        description="Train one InterpretGAN generator per layer of a classifier (Zheng, Zhang, Lee & Prakash "
        "2020; losses in docs/diagnosis.md). Writes OUT/interpretgan.pt (weights-only; re-running the "
        "same command resumes it), OUT/interpretgan.json (history, per-layer consistency and "
        "information loss on the test split) and OUT/samples.png.",
    )
    add_checkpoint(p)
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated layer names (default: the model's default layers, see docs/diagnosis.md)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=2000, help="optimizer steps (default: 2000)"
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=2e-4)
    p.add_argument(
        "--width", type=positive_int, default=64, help="generator channels (default: 64)"
    )
    p.add_argument("--adversarial", type=float, default=0.05, help="λ_adv (default: 0.05)")
    p.add_argument("--feature", type=float, default=1.0, help="λ_feat (default: 1)")
    p.add_argument("--prediction", type=float, default=1.0, help="λ_pred (default: 1)")
    p.add_argument("--reconstruction", type=float, default=10.0, help="λ_rec (default: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-n",
        type=positive_int,
        default=1000,
        help="test images for the statistics (default: 1000; fewer when the split is smaller)",
    )
    add_data(p)
    add_out(p, "runs/interpretgan")
    add_force(
        p,
        "train from scratch, deleting the results of a different run in --out; without it "
        "they are refused (the same command resumes or reuses its own)",
    )
    add_device(p)
    p.set_defaults(func=run)


#: Files a run writes into --out; a different run's are refused without --force.
_RESULTS = ("interpretgan.pt", "interpretgan.json", "samples.png")


def run(args: argparse.Namespace) -> int:
    from underfire.core import io as _io
    from underfire.data import ImageDataset, load_dataset
    from underfire.diagnosis import InterpretGANConfig, evaluate_interpretgan, train_interpretgan
    from underfire.diagnosis.plots import plot_interpretgan

    device = device_of(args)
    ckpt, dataset, train = checkpoint_and_data(args, "train")
    if not isinstance(train, ImageDataset):
        from underfire.core.errors import CommandError

        raise CommandError(
            f"train-interpretgan needs an in-memory dataset; {dataset} is read from disk per image"
        )
    test = load_dataset(dataset, "test", args.data_root, seed=int(ckpt.meta.get("data_seed", 0)))
    assert isinstance(test, ImageDataset)  # same source as the in-memory train split above
    config = InterpretGANConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_discriminator=args.lr,
        width=args.width,
        adversarial=args.adversarial,
        feature=args.feature,
        prediction=args.prediction,
        reconstruction=args.reconstruction,
        seed=args.seed,
    )
    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    with guarded_output(args, "train-interpretgan", _RESULTS) as out:
        checkpoint = out / "interpretgan.pt"
        if args.force and checkpoint.exists():
            # another run's generators may not resume under these settings: start afresh
            say(f"[train-interpretgan] --force: deleting {checkpoint}")
            checkpoint.unlink()
        say(f"train-interpretgan: {args.steps} steps on {dataset} ({len(train)} images) → {out}")
        gan, history = train_interpretgan(
            ckpt.model,
            train,
            layers,
            config,
            device=device,
            checkpoint=checkpoint,
            progress=True,
            meta={"classifier_checkpoint": str(args.checkpoint), "dataset": dataset},
        )
        n = min(args.eval_n, len(test))
        x, y = test.x[:n].to(device), test.y[:n].to(device)
        stats = evaluate_interpretgan(gan, ckpt.model, x, y)
        plot_interpretgan(
            gan, ckpt.model, x[:8], None, out / "samples.png", classes=test.info.classes
        )
        summary = {
            "interpretgan_checkpoint": str(checkpoint),
            "classifier": str(args.checkpoint),
            "dataset": dataset,
            "layers": gan.layers,
            "config": gan.meta.get("config"),
            "seconds": round(float(gan.meta.get("seconds", 0.0)), 2),
            "test": stats,
            "history": history,
        }
        _io.write_json(out / "interpretgan.json", summary)
        print(
            json.dumps(
                {"interpretgan_checkpoint": summary["interpretgan_checkpoint"], "test": stats},
                indent=2,
            )
        )
    return 0
