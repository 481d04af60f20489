"""`underfire diagnose`: per-layer vulnerability of a checkpoint under an attack (Zheng et al. 2020)."""

from __future__ import annotations

import argparse
from pathlib import Path

from underfire.commands._common import (
    add_checkpoint,
    add_data,
    add_device,
    add_force,
    add_out,
    checkpoint_and_data,
    guarded_output,
    positive_int,
    print_table,
    say,
)

#: One line for `underfire --help` (read without building the full parser).
HELP = "diagnose layer by layer how an attack fools a checkpoint (report + results.json)"


def register(subparsers: argparse._SubParsersAction) -> None:
    from underfire.attacks import names

    p = subparsers.add_parser(
        "diagnose",
        help=HELP,
        description="Attack a checkpoint on test images, then measure per layer the perturbation's amplification "
        "and growth, activation patching (clean ↔ adversarial), information loss and their correlation "
        "(definitions in docs/diagnosis.md). With --interpretgan, information loss comes from its "
        "generators and the report shows the images they generate from clean and adversarial features. "
        "Writes OUT/results.json, OUT/report.html, OUT/report.md and OUT/figures/.",
    )
    add_checkpoint(p)
    p.add_argument(
        "--attack", default="pgd", help=f"attack name: {', '.join(names())} (default: pgd)"
    )
    p.add_argument("--eps", type=float, default=0.1, help="attack radius ε (default: 0.1)")
    p.add_argument(
        "--steps", type=positive_int, default=None, help="attack iterations (bim, pgd, cw)"
    )
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated layer names (default: the InterpretGAN's, else the model's default layers)",
    )
    p.add_argument(
        "--interpretgan",
        type=Path,
        default=None,
        help="folder (or .pt file) written by `underfire train-interpretgan`",
    )
    p.add_argument("--topk", type=float, default=0.1, help="fraction of units in partial patching")
    p.add_argument("--n", type=positive_int, default=500, help="test images (default: 500)")
    p.add_argument("--images", type=positive_int, default=8, help="rows of InterpretGAN images")
    p.add_argument("--seed", type=int, default=0)
    add_data(p)
    add_out(p, "runs/diagnose")
    add_force(p, "replace the results of a different run already in --out")
    add_device(p)
    p.set_defaults(func=run)


def _attack(args: argparse.Namespace):
    from underfire.attacks import ATTACKS, create

    name = args.attack.lower()
    kwargs: dict = {}
    if not getattr(ATTACKS.get(name), "minimal", False):
        kwargs["eps"] = args.eps
    if args.steps is not None:
        kwargs["steps"] = args.steps
    if name == "pgd":
        kwargs["seed"] = args.seed
    return create(name, **kwargs)


#: Files a run writes into --out; a different run's are refused without --force.
_RESULTS = ("results.json", "report.html", "report.md")


def run(args: argparse.Namespace) -> int:
    from underfire.diagnosis import InterpretGAN
    from underfire.diagnosis.report import diagnose, write_diagnosis

    attack = _attack(args)
    ckpt, dataset, data = checkpoint_and_data(args, "test")
    model = ckpt.model.eval()
    device = next(model.parameters()).device
    data = data.subset(args.n)
    x, y = data.x.to(device), data.y.to(device)
    gan = None
    if args.interpretgan is not None:
        path = args.interpretgan
        gan = InterpretGAN.load(path / "interpretgan.pt" if path.is_dir() else path, device)
    layers = [n.strip() for n in args.layers.split(",") if n.strip()] if args.layers else None
    with guarded_output(args, "diagnose", _RESULTS) as out:
        say(f"[diagnose] {attack!r} on {len(x)} {dataset} test images")
        diagnosis = diagnose(
            model, x, y, attack, layers=layers, interpretgan=gan, topk=args.topk, seed=args.seed
        )
        result = diagnosis.result
        print(
            f"{args.attack} ε={args.eps:g} on {dataset}: accuracy {result.clean_accuracy:.4f} → "
            f"{result.adversarial_accuracy:.4f}; information loss from {result.information_source}"
        )
        print_table(diagnosis.rows())
        print(
            f"correlation(information loss, amplification) across layers: Spearman {result.correlation:.3f}, "
            f"Pearson {result.correlation_pearson:.3f}; local (Δ loss vs log growth) {result.correlation_local:.3f}"
        )
        label = f"{args.attack} ε={args.eps:g}"
        write_diagnosis(
            diagnosis,
            out,
            title=f"underfire diagnose: {args.checkpoint.name} under {label}",
            label=label,
            about={
                "checkpoint": str(args.checkpoint),
                "dataset": dataset,
                "attack": {
                    "name": args.attack,
                    "eps": args.eps,
                    "steps": args.steps,
                    "seed": args.seed,
                },
            },
            dataset=dataset,
            classes=data.info.classes,
            images=args.images,
        )
        say(f"[diagnose] wrote {out / 'results.json'} and {out / 'report.html'}")
    return 0
