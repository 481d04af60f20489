"""`underfire diagnose`: per-layer vulnerability of a checkpoint under an attack (Zheng et al. 2020)."""

from __future__ import annotations

import argparse
from pathlib import Path

from underfire.commands._common import (
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
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="a checkpoint written by `underfire train`"
    )
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
    p.add_argument("--dataset", default=None, help="dataset (default: the checkpoint's)")
    p.add_argument("--n", type=positive_int, default=500, help="test images (default: 500)")
    p.add_argument("--images", type=positive_int, default=8, help="rows of InterpretGAN images")
    p.add_argument("--seed", type=int, default=0)
    add_data(p)
    add_out(p, "runs/diagnose")
    add_force(p, "replace the results of a different run already in --out")
    add_device(p)
    p.set_defaults(func=run)


def _attack(args: argparse.Namespace):
    from underfire.attacks import create

    name = args.attack.lower()
    kwargs: dict = {}
    if name not in ("cw", "jsma"):
        kwargs["eps"] = args.eps
    if args.steps is not None:
        kwargs["steps"] = args.steps
    if name == "pgd":
        kwargs["seed"] = args.seed
    return create(name, **kwargs)


#: Files a run writes into --out; a different run's are refused without --force.
_RESULTS = ("results.json", "report.html", "report.md")


def run(args: argparse.Namespace) -> int:
    import warnings

    import torch

    from underfire.core import io as _io
    from underfire.diagnosis import InterpretGAN, evaluate_interpretgan, layer_vulnerability
    from underfire.diagnosis.plots import plot_interpretgan, plot_layer_vulnerability
    from underfire.report import Report

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
        torch.manual_seed(args.seed)
        say(f"[diagnose] {attack!r} on {len(x)} {dataset} test images")
        x_adv = attack(model, x, y)
        with warnings.catch_warnings():  # fewer than 3 layers: the correlations print as nan
            warnings.simplefilter("ignore", UserWarning)
            result = layer_vulnerability(
                model, x, x_adv, layers, y=y, interpretgan=gan, topk=args.topk
            )
        rows = [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            for r in result.rows()
        ]
        print(
            f"{args.attack} ε={args.eps:g} on {dataset}: accuracy {result.clean_accuracy:.4f} → "
            f"{result.adversarial_accuracy:.4f}; information loss from {result.information_source}"
        )
        print_table(rows)
        print(
            f"correlation(information loss, amplification) across layers: Spearman {result.correlation:.3f}, "
            f"Pearson {result.correlation_pearson:.3f}; local (Δ loss vs log growth) {result.correlation_local:.3f}"
        )

        figures = out / "figures"
        plot_layer_vulnerability(
            {dataset: result}, figures / "layers.png", title=f"{args.attack} ε={args.eps:g}"
        )
        report = Report(
            f"underfire diagnose: {args.checkpoint.name} under {args.attack} ε={args.eps:g}"
        )
        report.text(
            f"{len(x)} `{dataset}` test images; accuracy {result.clean_accuracy:.1%} clean, "
            f"{result.adversarial_accuracy:.1%} under {attack!r}. Definitions: docs/diagnosis.md "
            "(Zheng, Zhang, Lee & Prakash 2020 define no public formulas; these are underfire's). "
            f"Information loss from: {result.information_source}."
        )
        report.section("Per-layer figures")
        report.table(rows)
        report.text(
            f"Input relative change ‖x′−x‖/‖x‖ = {result.input_amplification:.4f}. Across layers, "
            f"information loss vs amplification: Spearman ρ = {result.correlation:.3f}, Pearson r = "
            f"{result.correlation_pearson:.3f}; information a layer loses itself vs its log growth: "
            f"ρ = {result.correlation_local:.3f}."
        )
        report.figure(
            figures / "layers.png",
            "Amplification, growth, top-k patching and information loss per layer",
        )
        payload = {
            "checkpoint": str(args.checkpoint),
            "dataset": dataset,
            "attack": {
                "name": args.attack,
                "eps": args.eps,
                "steps": args.steps,
                "seed": args.seed,
            },
            "n": len(x),
            "diagnosis": result.to_dict(),
        }
        if gan is not None:
            fooled = ((model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)).nonzero().flatten()
            pick = torch.cat([fooled, torch.arange(len(x), device=device)]).unique(sorted=False)
            pick = list(dict.fromkeys(pick.tolist()))[: args.images]
            plot_interpretgan(
                gan,
                model,
                x[pick],
                x_adv[pick],
                figures / "interpretgan.png",
                layers=result.layers,
                classes=data.info.classes,
            )
            stats_clean = evaluate_interpretgan(gan, model, x, y)
            stats_adv = evaluate_interpretgan(gan, model, x_adv, y)
            payload["interpretgan"] = {"clean": stats_clean, "adversarial": stats_adv}
            report.section("InterpretGAN: what each layer encodes")
            report.table(
                [
                    {
                        "layer": n,
                        "clean: label kept": stats_clean[n]["consistency"],
                        "clean: correct": stats_clean[n]["accuracy"],
                        "adversarial: label kept": stats_adv[n]["consistency"],
                        "adversarial: correct": stats_adv[n]["accuracy"],
                    }
                    for n in result.layers
                ]
            )
            report.figure(
                figures / "interpretgan.png",
                "Clean and adversarial inputs, then per layer the images generated from clean and from "
                "adversarial features, titled with the classifier's label (red: differs from the clean input's)",
            )
        _io.write_json(out / "results.json", payload)
        report.write(out)
        say(f"[diagnose] wrote {out / 'results.json'} and {out / 'report.html'}")
    return 0
