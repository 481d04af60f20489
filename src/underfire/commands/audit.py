"""`underfire audit`: how attackable a trained classifier and its explanations are, in one report."""

from __future__ import annotations

import argparse

from underfire.commands._common import (
    add_checkpoint,
    add_data,
    add_device,
    add_force,
    add_out,
    add_threads,
    checkpoint_and_data,
    float_list,
    invocation,
    positive_float,
    positive_int,
    say,
)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


#: One line for `underfire --help` (read without building the full parser).
HELP = "robust accuracy, gradient-masking checks and explanation stability of a checkpoint"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audit",
        help=HELP,
        description=(
            "Attack a trained classifier white-box and by transfer over a range of ε, check the "
            "result for gradient masking, and compare its explanations on benign and attacked "
            "images. Writes report.html (self-contained), report.md, results.json and figures; "
            "re-running the same command resumes a killed audit."
        ),
    )
    add_checkpoint(p)
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument(
        "--attacks",
        type=_names,
        default=["fgsm", "pgd", "ddn"],
        help="comma-separated (default: fgsm,pgd,ddn)",
    )
    p.add_argument(
        "--strength",
        choices=["fast", "standard"],
        default="fast",
        help="fast: the --attacks alone; standard: AutoAttack (Croce & Hein 2020) added, the "
        "evaluation robustness numbers are expected to come from (slower)",
    )
    p.add_argument(
        "--interpreters",
        type=_names,
        default=["grad", "ig", "gradcam"],
        help="comma-separated (default: grad,ig,gradcam)",
    )
    p.add_argument(
        "--target-layer",
        default=None,
        help="module CAM / Grad-CAM read, e.g. net.layer4 (default: the model's declared "
        "target_layer, else the last module with a spatial 4-D output)",
    )
    p.add_argument(
        "--eps",
        type=float_list,
        default=None,
        help="L∞ radii, e.g. 0.1,0.2,0.3 (default: by input size)",
    )
    p.add_argument("--n", type=positive_int, default=1000, help="samples to audit (default: 1000)")
    p.add_argument(
        "--n-maps", type=positive_int, default=16, help="images for the explanation sections"
    )
    p.add_argument(
        "--time-budget", type=positive_float, default=None, help="seconds; later parts are skipped"
    )
    p.add_argument(
        "--no-surrogate", action="store_true", help="skip the transfer attack from a surrogate"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--exhaustive",
        action="store_true",
        help="run every attack on every sample at every ε (each attack's own curve); by "
        "default only the samples still robust are attacked, with the same worst case",
    )
    add_data(p)
    add_device(p)
    add_threads(p)
    add_out(p, "runs/audit")
    add_force(
        p,
        "replace the report of a different run already in --out (an unfinished audit with "
        "other settings must still be deleted by hand)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from underfire.studies.audit import AuditConfig, audit

    config = AuditConfig(
        attacks=tuple(args.attacks),
        interpreters=tuple(args.interpreters),
        eps=tuple(args.eps) if args.eps else None,
        target_layer=args.target_layer,
        n=args.n,
        n_maps=args.n_maps,
        surrogate=not args.no_surrogate,
        time_budget=args.time_budget,
        seed=args.seed,
        strength=args.strength,
        exhaustive=args.exhaustive,
    )
    ckpt, dataset, data = checkpoint_and_data(args, args.split)
    say(f"auditing {args.checkpoint} on {dataset} ({args.split}, n ≤ {args.n}) → {args.out}")
    results = audit(
        ckpt.model,
        data,
        config=config,
        out=args.out,
        progress=True,
        force=args.force,
        command="audit",
        arguments=invocation(args),
        argv=" ".join(getattr(args, "argv", None) or ["audit"]),
    )
    # the summary is the command's result: stdout (progress and notes stay on stderr)
    worst = results["worst_case"]
    print(
        f"clean accuracy {results['clean']['accuracy']:.3f}; worst-case robust accuracy "
        + ", ".join(
            f"ε={e:g}: {a:.3f}" for e, a in zip(worst["eps"], worst["accuracy"], strict=True)
        ),
        flush=True,
    )
    failed = [c["check"] for c in results["soundness"] if not c["passed"]]
    if failed:
        print("gradient-masking checks failed: " + "; ".join(failed), flush=True)
    print(f"report: {args.out / 'report.html'} ({results['seconds']:.0f} s)", flush=True)
    return 0
