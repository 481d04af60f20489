"""`underfire train`: train a model on a dataset, with an optional defense objective.

What a re-run of the same command does with its ``--out`` (documented in the README):

- the checkpoint holds an unfinished run of the same settings → training resumes from it;
- it holds the finished run → nothing is trained; ``train.json`` is kept (written only if
  missing) and the command says it reuses the run;
- it holds a run with other settings (or of another command) → refused, unless ``--force``,
  which deletes that checkpoint (and a distillation teacher's) and trains from scratch;
- ``--force`` on a finished run of the same settings also retrains from scratch.

Another live run on the same ``--out`` makes it refuse at once (a lock file, see
:class:`underfire.core.io.RunLock`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from underfire.commands._common import (
    add_data,
    add_device,
    add_force,
    add_out,
    device_of,
    finite_float,
    guarded_output,
    positive_float,
    positive_int,
    say,
)


def defense_options() -> list[tuple[str, dict[str, Any]]]:
    """CLI options of ``underfire train --defense``: (flag, argparse keyword arguments).

    A function, not a constant: listing the defenses imports torch, which ``underfire
    --help`` should not wait for.
    """
    from underfire.defenses import DEFAULT_LAM, names

    return [
        (
            "--defense",
            {"default": "normal", "help": "training objective: " + ", ".join(names())},
        ),
        (
            "--lam",
            {
                "type": finite_float,
                "default": None,
                "help": f"gradient-regularization weight, per-example convention (default {DEFAULT_LAM:.1f} = paper λ 56,234 at batch 256)",
            },
        ),
        (
            "--paper-lambda",
            {
                "type": finite_float,
                "default": None,
                "help": "gradient-regularization λ in the paper's batch-averaged convention (converted with the batch size)",
            },
        ),
        (
            "--temperature",
            {
                "type": finite_float,
                "default": None,
                "help": "distillation temperature (default 50)",
            },
        ),
        (
            "--adv-eps",
            {"type": finite_float, "default": None, "help": "adversarial-training ε (default 0.3)"},
        ),
        (
            "--adv-ratio",
            {
                "type": finite_float,
                "default": None,
                "help": "weight of the adversarial term (default 0.5; 1.0 for PGD)",
            },
        ),
        (
            "--adv-steps",
            {"type": int, "default": None, "help": "PGD steps for pgd-adversarial (default 10)"},
        ),
        (
            "--adv-step-size",
            {"type": finite_float, "default": None, "help": "PGD step size (default 2.5·ε/steps)"},
        ),
    ]


def add_defense_arguments(parser: argparse.ArgumentParser) -> None:
    """Add :func:`defense_options` to an argparse parser."""
    for flag, kwargs in defense_options():
        parser.add_argument(flag, **kwargs)


def objective_from_args(name: str, **kwargs: Any) -> Any:
    """Like :func:`underfire.defenses.create`, but ignores options left at ``None``.

    An option given explicitly (not None) that the defense does not use is an error, so
    ``--lam`` with ``--defense distillation`` is reported rather than silently dropped.
    """
    from underfire.defenses import create

    return create(name, **{k: v for k, v in kwargs.items() if v is not None})


def objective_from_namespace(args: argparse.Namespace, batch_size: int | None = None) -> Any:
    """The objective described by parsed :func:`defense_options` (``--paper-lambda`` needs
    ``batch_size``)."""
    from underfire.defenses import paper_lambda_to_lam

    lam = getattr(args, "lam", None)
    paper = getattr(args, "paper_lambda", None)
    if paper is not None:
        if lam is not None:
            raise ValueError("give either --lam or --paper-lambda, not both")
        lam = paper_lambda_to_lam(paper, batch_size or 256)
    return objective_from_args(
        args.defense,
        lam=lam,
        temperature=getattr(args, "temperature", None),
        adv_eps=getattr(args, "adv_eps", None),
        adv_ratio=getattr(args, "adv_ratio", None),
        adv_steps=getattr(args, "adv_steps", None),
        adv_step_size=getattr(args, "adv_step_size", None),
    )


#: One line for `underfire --help` (read without building the full parser).
HELP = "train a classifier (checkpointed, resumable)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help=HELP,
        description="Train a model on a dataset. Interrupted runs (Ctrl-C, a crash, a kill) "
        "resume from the checkpoint when the same command is run again; a finished run is "
        "reused, not retrained (--force retrains). One run at a time per --out.",
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
        "--init",
        choices=["paper", "torch"],
        default=None,
        help="initialization of ross-cnn: paper (Glorot-uniform, zero biases, the authors'; "
        "default) or torch (PyTorch's default)",
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
        "--weight-decay",
        type=finite_float,
        default=0.0,
        help="L2 weight decay (default: 0; the standard CIFAR recipe: SGD with 5e-4)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "onecycle"],
        default="cosine",
        help="learning-rate schedule (default: cosine decay to 0; onecycle: linear warm-up "
        "from lr/25 over the first 30%% of the steps, then cosine decay)",
    )
    p.add_argument(
        "--augment",
        choices=["none", "crop-flip"],  # underfire.data.augment.AUGMENTATIONS (no torch here)
        default="none",
        help="training-data augmentation: none (default) or crop-flip (random crop with 4-pixel "
        "zero padding and horizontal flip, the standard CIFAR recipe)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the model's initialization, the data order and the validation split",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=500,
        help="save a checkpoint every N steps (default: 500; Ctrl-C also saves)",
    )
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="checkpoint path (default: OUT/model.pt)"
    )
    add_defense_arguments(p)  # --defense, --lam, --paper-lambda, --temperature, --adv-*
    add_data(p)
    add_out(p, "runs/train")
    add_force(
        p,
        "retrain from scratch, deleting the checkpoint in the way (a finished run, or one "
        "with other settings); without it such a checkpoint is reused or refused",
    )
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
    from underfire.core import distributed
    from underfire.core.outputs import lock_file
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig

    epochs, batch = _DEFAULTS.get(args.dataset.lower(), (10, 128))
    config = TrainConfig(
        epochs=args.epochs or epochs,
        steps=args.steps,
        batch_size=args.batch_size or batch,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        lr_schedule=args.lr_schedule,
        augment=args.augment,
    )
    objective = objective_from_namespace(args, batch_size=config.batch_size)
    model_kwargs: dict[str, Any] = {"pooling": args.pooling} if args.pooling else {}
    if args.init is not None:
        if args.model != "ross-cnn":
            raise ValueError(f"--init applies to ross-cnn only; drop it for --model {args.model}")
        model_kwargs["init"] = args.init

    def new_model() -> Any:
        return model_for_dataset(args.model, args.dataset, **model_kwargs)

    new_model()  # unknown model, or one that does not fit the data set: fail before any output
    argv = " ".join(getattr(args, "argv", None) or ["train"])
    with contextlib.ExitStack() as held:

        def hold() -> Path:
            out = held.enter_context(guarded_output(args, "train"))
            checkpoint = args.checkpoint or out / "model.pt"
            # the checkpoint may lie outside --out: it is held like --out, for this run only
            held.enter_context(
                lock_file(checkpoint, command=f"underfire {argv}", flag="--checkpoint")
            )
            _prepare_checkpoint(args, out, checkpoint, new_model, objective, config)
            return out

        # under torchrun rank 0 alone holds --out; the others wait for it (or get its error)
        out = distributed.from_main(hold)
        checkpoint = args.checkpoint or out / "model.pt"
        return _train(args, out, checkpoint, new_model, objective, config, model_kwargs)


def _prepare_checkpoint(
    args: argparse.Namespace,
    out: Path,
    checkpoint: Path,
    new_model: Any,
    objective: Any,
    config: Any,
) -> None:
    """With --force, delete the checkpoints in the way (only underfire checkpoints) and the
    summary; without it, refuse now, before any data is loaded, a checkpoint of another run."""
    from underfire.checkpoint import delete_checkpoints
    from underfire.defenses import teacher_checkpoint
    from underfire.train import Trainer

    paths = (checkpoint, teacher_checkpoint(checkpoint))
    if args.force:
        for path in delete_checkpoints(*paths, flag="--checkpoint"):
            say(f"[train] --force: deleting {path}")
        summary = out / "train.json"
        if summary.exists():
            say(f"[train] --force: deleting {summary}")
            summary.unlink()
        return
    delete_checkpoints(*paths, flag="--checkpoint", dry_run=True)  # refuses a foreign file
    Trainer(new_model(), objective, config, checkpoint=checkpoint, meta=_meta(args)).saved_state()


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    return {"dataset": args.dataset, "data_seed": args.seed, "defense": args.defense}


def _train(
    args: argparse.Namespace,
    out: Path,
    checkpoint: Path,
    new_model: Any,
    objective: Any,
    config: Any,
    model_kwargs: dict[str, Any],
) -> int:
    from underfire.core import io as _io
    from underfire.core.distributed import is_main
    from underfire.data import load_dataset
    from underfire.defenses import Distillation, train_distilled
    from underfire.train import Trainer, evaluate, seed_everything

    device = device_of(args)
    progress = sys.stderr.isatty()  # a progress bar for people, not for logs and pipes
    summary_path = out / "train.json"
    train = load_dataset(
        args.dataset, "train", args.data_root, download=args.download, seed=args.seed
    )
    val = load_dataset(args.dataset, "val", args.data_root, seed=args.seed)
    test = load_dataset(args.dataset, "test", args.data_root, seed=args.seed)
    say(f"[train] {args.dataset}: {len(train)} training, {len(val)} validation images")
    fit = {"config": config, "device": device, "checkpoint": checkpoint, "progress": progress}
    t0 = time.perf_counter()
    if isinstance(objective, Distillation) and objective.teacher is None:
        # --seed decides both initializations: teacher and student start from the same weights
        run = train_distilled(
            new_model,
            train,
            val,
            temperature=objective.temperature,
            meta=_meta(args),
            seed=args.seed,
            **fit,
        )
        model, result = run.student, run.result
    else:
        seed_everything(args.seed)  # --seed decides the initialization too
        model = new_model()
        result = Trainer(model, objective, meta=_meta(args), **fit).fit(train, val)
    if result.reused:
        say(
            f"[train] {checkpoint} holds this run, finished ({result.steps} steps): reusing "
            "it, nothing trained (pass --force to retrain from scratch)"
        )
        if summary_path.exists():  # a finished run's summary is never rewritten
            say(f"[train] {summary_path} is unchanged")
            stored = json.loads(summary_path.read_text(encoding="utf-8"))
            if is_main():
                print(stored.get("message") or f"test accuracy {stored.get('test_accuracy')}")
            return 0
    metrics = evaluate(model, test, device=device)  # under torchrun: shared by the ranks
    if not is_main():
        return 0  # rank 0 alone writes the summary
    message = (
        f"test accuracy {metrics['accuracy']:.4f} ({metrics['n']} images), "
        f"{result.steps} steps in {result.total_seconds:.1f} s; checkpoint {checkpoint}"
    )
    summary = {
        "dataset": args.dataset,
        "model": args.model,
        "model_kwargs": model_kwargs,
        "device": str(device),
        "steps": result.steps,
        "epochs": result.epochs_completed,
        "train_seconds": result.total_seconds,
        "wall_seconds": time.perf_counter() - t0,
        "resumed_from_step": result.resumed_from,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "history": result.history,
        "checkpoint": str(checkpoint),
        "message": message,
    }
    _io.write_json(summary_path, summary)
    print(message)
    return 0
