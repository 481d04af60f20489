"""`underfire attack`: robust accuracy of a checkpoint under an attack, for a sweep of ε."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from underfire.commands._common import (
    add_checkpoint,
    add_data,
    add_device,
    add_force,
    add_out,
    add_threads,
    checkpoint_and_data,
    finite_float,
    float_list,
    guarded_output,
    positive_int,
    print_table,
    say,
)

#: One line for `underfire --help` (read without building the full parser).
HELP = "attack a checkpoint: accuracy vs ε, adversarial examples and a figure"


def register(subparsers: argparse._SubParsersAction) -> None:
    from underfire.attacks import names

    p = subparsers.add_parser(
        "attack",
        help=HELP,
        description="Run an attack against a trained checkpoint on a dataset split for each ε; print a table, "
        "save adversarial examples (.pt), results.json and a figure to --out.",
    )
    add_checkpoint(p)
    p.add_argument(
        "--attack", default="pgd", help=f"attack name: {', '.join(names())} (default: pgd)"
    )
    p.add_argument(
        "--eps",
        type=float_list,
        default=None,
        help="comma-separated radii, e.g. 0.1,0.2,0.3 (L∞ unless --norm l2; not for cw/jsma)",
    )
    p.add_argument("--steps", type=positive_int, default=None, help="iterations (bim, pgd, cw)")
    p.add_argument("--step-size", type=finite_float, default=None, help="step size α (bim, pgd)")
    p.add_argument(
        "--norm", choices=["linf", "l2"], default=None, help="norm of pgd (default: linf)"
    )
    p.add_argument(
        "--target",
        default=None,
        help="targeting rule: next, random or least-likely (default: untargeted, or the attack's own)",
    )
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument(
        "--n", type=positive_int, default=1000, help="number of images attacked (default: 1000)"
    )
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument(
        "--save",
        type=positive_int,
        default=64,
        help="adversarial examples saved per ε (default: 64)",
    )
    p.add_argument("--seed", type=int, default=0)
    adv2 = p.add_argument_group(
        "adv2 (ADV², Zhang et al. 2020: fool the classifier and its interpreter)"
    )
    adv2.add_argument(
        "--interpreter",
        default=None,
        help="interpreter attacked by adv2: grad, smoothgrad, ig, cam, gradcam, mask, rts, ensemble",
    )
    adv2.add_argument(
        "--rts-checkpoint",
        type=Path,
        default=None,
        help="masking network from `underfire train-rts` (for --interpreter rts)",
    )
    adv2.add_argument(
        "--warm-steps", type=int, default=None, help="PGD warm-start steps (default: the preset's)"
    )
    adv2.add_argument(
        "--lam",
        type=float_list,
        default=None,
        help="λ per stage, e.g. 0.05,0.2,1 (default: preset)",
    )
    adv2.add_argument(
        "--preset",
        choices=["imagenet", "small"],
        default=None,
        help="settings source (default: imagenet from 128 px, else small)",
    )
    add_data(p)
    add_out(p, "runs/attack")
    add_force(p, "replace the results of a different run already in --out")
    add_device(p)
    p.add_argument(
        "--exhaustive",
        action="store_true",
        help="attack every image at every ε (by default only the images still robust: a "
        "fooled image leaves the batch and counts as fooled at every larger ε)",
    )
    add_threads(p)
    p.set_defaults(func=run)


_RESULTS = ("results.json", "adversarial.pt", "attack.png")


def _build(args: argparse.Namespace):
    from underfire.attacks import ATTACKS, create

    kwargs: dict = {}
    name = args.attack.lower()
    if args.steps is not None:
        kwargs["steps"] = args.steps
    if args.step_size is not None:
        kwargs["step_size"] = args.step_size
    if args.norm is not None:
        kwargs["norm"] = args.norm
    if name == "pgd":
        kwargs["seed"] = args.seed
    if name in ATTACKS and getattr(ATTACKS.get(name), "minimal", False) and args.eps:
        from underfire.core.errors import CommandError

        raise CommandError(
            f"{name} does not take --eps (it minimizes the perturbation instead of bounding it)"
        )
    return create(name, **kwargs)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.attack.lower() == "adv2":
        return run_adv2(args)

    from underfire.core import io as _io
    from underfire.plotting import new_figure, save_figure
    from underfire.robustness import robust_accuracy

    attack = _build(args)
    ckpt, dataset, data = checkpoint_and_data(args, args.split)
    data = data.subset(args.n)
    with guarded_output(args, "attack", _RESULTS) as out:
        torch.manual_seed(args.seed)
        say(f"[attack] {attack!r} on {len(data)} {dataset} {args.split} images")
        result = robust_accuracy(
            ckpt.model.eval(),
            attack,
            data,
            eps=args.eps,
            target=args.target,
            batch_size=args.batch_size,
            keep_examples=args.save,
            exhaustive=args.exhaustive,
        )
        examples = result.pop("examples")
        eps = result["eps"]
        rows = [
            {"eps": "-" if e is None else e, "accuracy": round(a, 4), "success_rate": round(s, 4)}
            for e, a, s in zip(eps, result["accuracy"], result["success_rate"], strict=False)
        ]
        if hasattr(attack, "queries"):  # black-box: report the oracle's cost
            result["oracle_queries"] = int(attack.queries)
            result["substitute_agreement"] = float(attack.agreement)
        extra = f", {result['oracle_queries']} oracle queries" if "oracle_queries" in result else ""
        print(
            f"{args.attack} on {dataset} ({result['n']} images, clean accuracy {result['clean_accuracy']:.4f}{extra})"
        )
        print_table(rows)

        saved = {
            "x": examples["x"],
            "y": examples["y"],
            "x_adv": examples["x_adv"],
            "eps": torch.tensor([float("nan") if e is None else e for e in eps]),
        }
        _io.atomic_write(out / "adversarial.pt", lambda f: torch.save(saved, f))
        _io.write_json(
            out / "results.json",
            result
            | {
                "checkpoint": str(args.checkpoint),
                "dataset": dataset,
                "split": args.split,
                "target": args.target,
            },
        )
        k = min(8, examples["x"].shape[0])
        fig = new_figure(1.1 * k + 1.5, 1.2 * (len(eps) + 1) + 2.5)
        grid = fig.add_gridspec(len(eps) + 2, k)
        ax = fig.add_subplot(grid[:1, :])
        if eps[0] is not None and len(eps) > 1:
            ax.plot(eps, result["accuracy"], marker="o")
            ax.set(xlabel="ε", ylabel="accuracy", ylim=(-0.02, 1.02))
        else:
            ax.axis("off")
            ax.text(0.5, 0.5, f"accuracy {result['accuracy'][0]:.3f}", ha="center", va="center")
        rows_img = [("clean", examples["x"])] + [
            (f"ε={e:g}" if e is not None else args.attack, examples["x_adv"][i])
            for i, e in enumerate(eps)
        ]
        for r, (label, imgs) in enumerate(rows_img):
            for c in range(k):
                a = fig.add_subplot(grid[r + 1, c])
                img = imgs[c].permute(1, 2, 0).numpy()
                a.imshow(
                    img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1
                )
                a.set_xticks([]), a.set_yticks([])
                if c == 0:
                    a.set_ylabel(label, fontsize=7)
        save_figure(fig, out / "attack.png")
        say(
            f"[attack] wrote {out / 'results.json'}, {out / 'adversarial.pt'}, {out / 'attack.png'}"
        )
    return 0


def _adv2_attack(args: argparse.Namespace, side: int) -> Any:
    from underfire.attacks import ADV2
    from underfire.core.errors import CommandError
    from underfire.interpreters import create_interpreter, interpreter_names

    if not args.interpreter:
        raise CommandError(
            f"--attack adv2 needs --interpreter NAME ({', '.join(interpreter_names())})"
        )
    if args.target is None:
        raise CommandError("adv2 is a targeted attack: pass --target next, random or least-likely")
    if args.eps is not None and len(args.eps) != 1:
        raise CommandError("adv2 takes one --eps value")
    name = args.interpreter.lower()
    kwargs: dict = {}
    if name == "rts":
        if args.rts_checkpoint is None:
            raise CommandError(
                "--interpreter rts needs --rts-checkpoint (train one with `underfire train-rts`)"
            )
        kwargs["checkpoint"] = args.rts_checkpoint
    interpreter = create_interpreter(name, **kwargs)
    settings: dict = {"preset": args.preset or ("imagenet" if side >= 128 else "small")}
    for key, value in (
        ("eps", args.eps[0] if args.eps else None),
        ("steps", args.steps),
        ("step_size", args.step_size),
        ("warm_steps", args.warm_steps),
        ("lam", tuple(args.lam) if args.lam else None),
    ):
        if value is not None:
            settings[key] = value
    return ADV2(interpreter, seed=args.seed, **settings)


def run_adv2(args: argparse.Namespace) -> int:
    """ADV² against a checkpoint + interpreter: success, confidence, map L1 and IoU."""
    import torch

    from underfire.attacks.adv2 import adv2_figure, evaluate_adv2
    from underfire.core import io as _io
    from underfire.plotting import save_figure

    ckpt, dataset, data = checkpoint_and_data(args, args.split)
    data = data.subset(args.n)
    model = ckpt.model.eval()
    attack = _adv2_attack(args, int(data.x.shape[-1]))
    with guarded_output(args, "attack", _RESULTS) as out:
        torch.manual_seed(args.seed)
        say(f"[attack] {attack!r} on {len(data)} {dataset} {args.split} images")
        report = evaluate_adv2(
            attack,
            model,
            data,
            target=args.target,
            batch_size=min(args.batch_size, 64),
            keep=args.save,
            progress=lambda done, total: say(f"[attack] {done}/{total} images"),
        )
        summary = report.summary
        print(
            f"adv2 ({attack.interpreter.name}) on {dataset} ({summary['n']} images, target {args.target})"
        )
        print_table([{k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}])
        _io.atomic_write(out / "adversarial.pt", lambda f: torch.save(report.examples, f))
        _io.write_json(
            out / "results.json",
            report.to_dict()
            | {
                "checkpoint": str(args.checkpoint),
                "dataset": dataset,
                "split": args.split,
                "target": args.target,
            },
        )
        save_figure(adv2_figure(report.examples), out / "attack.png")
        say(
            f"[attack] wrote {out / 'results.json'}, {out / 'adversarial.pt'}, {out / 'attack.png'}"
        )
    return 0
