"""`underfire train`: train a model on a dataset, with an optional defense objective."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from underfire.commands._common import (
    add_data,
    add_device,
    add_out,
    device_of,
    positive_float,
    positive_int,
    say,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier (checkpointed, resumable)",
        description="Train a model on a dataset. Interrupted runs resume from the "
        "checkpoint when the same command is run again.",
    )
    p.add_argument(
        "--dataset",
        default="digits",
        help="dataset name (see `underfire datasets`; default: digits)",
    )
    p.add_argument(
        "--model",
        default="ross-cnn",
        help="model name: ross-cnn, resnet-small, densenet-small, ...",
    )
    p.add_argument(
        "--pooling", choices=["max", "avg"], default=None, help="pooling of ross-cnn (default: max)"
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="training epochs (default depends on the dataset)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="optimizer steps; overrides --epochs"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="batch size (default depends on the dataset)",
    )
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default="cosine",
        help="learning-rate schedule (default: cosine decay to 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint path (default: OUT/model.pt)"
    )
    from underfire.defenses import add_cli_arguments

    add_cli_arguments(p)  # --defense, --lam, --paper-lambda, --temperature, --adv-*
    add_data(p)
    add_out(p, "runs/train")
    add_device(p)
    p.set_defaults(func=run)


# Budgets that reach the README's accuracies (digits ≥ 95%, MNIST ≥ 99%) on 2 CPU cores.
_DEFAULTS = {
    "digits": (15, 64),
    "mnist": (4, 128),
    "fashion-mnist": (10, 128),
    "notmnist": (15, 64),
    "cifar10": (30, 128),
    "svhn": (10, 128),
}


def run(args: argparse.Namespace) -> int:
    from underfire.core import io as _io
    from underfire.data import load_dataset
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig, Trainer, evaluate

    device = device_of(args)
    epochs, batch = _DEFAULTS.get(args.dataset.lower(), (10, 128))
    config = TrainConfig(
        epochs=args.epochs or epochs,
        steps=args.steps,
        batch_size=args.batch_size or batch,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        lr_schedule=args.lr_schedule,
    )
    model_kwargs = {"pooling": args.pooling} if args.pooling else {}
    model = model_for_dataset(args.model, args.dataset, **model_kwargs)
    say(f"[train] loading {args.dataset}")
    train = load_dataset(
        args.dataset, "train", args.data_root, download=args.download, seed=args.seed
    )
    val = load_dataset(args.dataset, "val", args.data_root, seed=args.seed)
    test = load_dataset(args.dataset, "test", args.data_root, seed=args.seed)
    checkpoint = args.checkpoint or args.out / "model.pt"
    meta = {"dataset": args.dataset, "data_seed": args.seed, "defense": args.defense}
    objective = _objective(
        args,
        config,
        lambda: model_for_dataset(args.model, args.dataset, **model_kwargs),
        train,
        val,
        device,
        checkpoint,
        meta,
    )
    trainer = Trainer(
        model, objective, config, device=device, checkpoint=checkpoint, progress=True, meta=meta
    )
    t0 = time.perf_counter()
    result = trainer.fit(train, val)
    metrics = evaluate(model, test, device=device)
    summary = {
        "dataset": args.dataset,
        "model": args.model,
        "model_kwargs": model_kwargs,
        "device": str(device),
        "steps": result.steps,
        "epochs": result.epochs_completed,
        "train_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - t0,
        "resumed_from_step": result.resumed_from,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "history": result.history,
        "checkpoint": str(checkpoint),
    }
    _io.write_json(args.out / "train.json", summary)
    print(
        f"test accuracy {metrics['accuracy']:.4f} ({metrics['n']} images), "
        f"{result.steps} steps in {result.seconds:.1f} s; checkpoint {checkpoint}"
    )
    return 0


def _objective(args, config, model_factory, train, val, device, checkpoint, meta):
    """The --defense objective (distillation: its teacher is trained first, checkpoint *.teacher.pt)."""
    from underfire.defenses import objective_from_namespace, prepare_objective

    objective = objective_from_namespace(args, batch_size=config.batch_size)
    return prepare_objective(
        objective,
        model_factory,
        train,
        val,
        config=config,
        device=device,
        checkpoint=checkpoint,
        progress=True,
        meta=meta,
    )
