"""`underfire reproduce STUDY`: rerun a paper's experiments end to end and write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from underfire.commands._common import (
    add_device,
    add_force,
    device_of,
    guarded_output,
    positive_float,
    positive_int,
    say,
)

STUDIES = ("ross2018", "zhang2020", "zheng2020")

#: One line for `underfire --help` (read without building the full parser).
HELP = "reproduce a paper's experiments (ross2018, zhang2020, zheng2020) and write results and a report"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help=HELP,
        description="Reproduce a study end to end: train every model (resumable: trained models in OUT/models are "
        "reused), run the attacks, decide the paper's claims and write results.json, config.json, "
        "figures, report.md and report.html to --out.",
    )
    p.add_argument(
        "study",
        choices=STUDIES,
        help="ross2018: Ross & Doshi-Velez, AAAI 2018 (input-gradient regularization); "
        "zhang2020: Zhang et al., USENIX Security 2020 (ADV², attacks on interpreters); "
        "zheng2020: Zheng et al. 2020 (max vs average pooling, per-layer diagnosis)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="ross2018: mnist, notmnist, digits, svhn or fashion-mnist (default mnist); "
        "zhang2020: cifar10, mnist, digits or imagenet (default cifar10); "
        "zheng2020: mnist, cifar10 or digits (default mnist)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $UNDERFIRE_DATA or ./data)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the quick CPU profile (minutes; use with --dataset digits)",
    )
    p.add_argument(
        "--profile", default=None, help="full (paper), cpu, quick or test; overrides --quick"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/STUDY-DATASET)"
    )
    p.add_argument("--seed", type=int, default=0, help="ross2018: the seed")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="zheng2020: the seeds (one model per pooling variant and seed; overrides the profile)",
    )
    p.add_argument(
        "--gan-steps",
        type=int,
        default=None,
        help="zheng2020: InterpretGAN training steps (0: none; overrides the profile)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="training steps per model (overrides the profile)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="training batch size (overrides the profile)",
    )
    p.add_argument(
        "--n-eval",
        type=positive_int,
        default=None,
        help="test images attacked (overrides the profile)",
    )
    p.add_argument(
        "--paper-lambda",
        type=positive_float,
        default=None,
        help="gradient-regularization λ in the paper's convention",
    )
    p.add_argument(
        "--weights",
        action="append",
        default=None,
        metavar="ARCH=FILE",
        help="zhang2020 --dataset imagenet: torchvision state dict per classifier "
        "(resnet50=FILE, densenet169=FILE; a bare FILE is resnet50's); 'random' for a plumbing run",
    )
    p.add_argument(
        "--n-images",
        type=positive_int,
        default=None,
        help="zhang2020: correctly classified test images attacked (overrides the profile)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=None,
        help="ross2018: train and compare only these models (must include normal and gradreg)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is much faster on a busy, shared CPU)",
    )
    add_force(
        p,
        "replace the results of a different reproduction already in --out (trained models "
        "with other settings must still be deleted by hand)",
    )
    add_device(p)
    p.set_defaults(func=run)


_RESULTS = ("results.json", "config.json", "report.html", "report.md")


def _weights(values: list[str] | None) -> dict[str, str] | None:
    """--weights values → {arch: file}; 'random' applies to both ImageNet classifiers."""
    if not values:
        return None
    out: dict[str, str] = {}
    for v in values:
        if v == "random":
            out |= {"resnet50": "random", "densenet169": "random"}
        elif "=" in v:
            arch, path = v.split("=", 1)
            out[arch.strip()] = path
        else:
            out["resnet50"] = v
    return out


def run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.study == "zheng2020":
        return _run_zheng2020(args)
    profile = args.profile or ("quick" if args.quick else "full")
    if args.study == "zhang2020":
        return _run_zhang2020(args, profile)
    from underfire.experiments.ross2018 import run_ross2018

    args.dataset = args.dataset or "mnist"
    out = args.out = args.out or Path("runs") / f"{args.study}-{args.dataset}"
    with guarded_output(args, "reproduce", _RESULTS):
        t0 = time.perf_counter()
        results = run_ross2018(
            args.dataset,
            profile=profile,
            out=out,
            data_root=args.data_root,
            device=device_of(args),
            progress=True,
            log=lambda m: say(f"[reproduce] {m}"),
            seed=args.seed,
            steps=args.steps,
            batch_size=args.batch_size,
            n_eval=args.n_eval,
            paper_lambda=args.paper_lambda,
            models=args.models,
        )
        for c in results["claims"]:
            verdict = {True: "held", False: "did not hold", None: "not evaluated"}[c["held"]]
            print(f"claim {c['id']}: {verdict} — {c['claim']}")
        say(
            f"[reproduce] wrote {out}/report.html, results.json and config.json in {time.perf_counter() - t0:.1f} s"
        )
    return 0


def _run_zheng2020(args: argparse.Namespace) -> int:
    from underfire.core.errors import CommandError
    from underfire.experiments.zheng2020 import run_zheng2020
    from underfire.experiments.zheng2020_report import outcome_sentence

    if args.paper_lambda is not None:
        raise CommandError("--paper-lambda applies to ross2018 only")
    profile = args.profile or ("quick" if args.quick else "full")
    args.dataset = args.dataset or "mnist"
    out = args.out = args.out or Path("runs") / f"{args.study}-{args.dataset}"
    with guarded_output(args, "reproduce", _RESULTS):
        t0 = time.perf_counter()
        results = run_zheng2020(
            args.dataset,
            profile=profile,
            out=out,
            data_root=args.data_root,
            device=device_of(args),
            progress=True,
            log=lambda m: say(f"[reproduce] {m}"),
            seeds=args.seeds,
            gan_steps=args.gan_steps,
            steps=args.steps,
            batch_size=args.batch_size,
            n_eval=args.n_eval,
        )
        seeds = len(results["config"]["seeds"])
        print(outcome_sentence(results["comparison"], seeds).replace("**", ""))
        say(
            f"[reproduce] wrote {out}/report.html, results.json and config.json in {time.perf_counter() - t0:.1f} s"
        )
    return 0


def _run_zhang2020(args: argparse.Namespace, profile: str) -> int:
    from underfire.experiments.zhang2020 import run_zhang2020
    from underfire.experiments.zhang2020_config import CLASSIFIERS

    dataset = args.dataset or "cifar10"
    out = args.out = args.out or Path("runs") / f"zhang2020-{dataset}"
    weights = _weights(args.weights)
    overrides: dict[str, Any] = {"n_eval": args.n_images or args.n_eval}
    if weights is not None:
        if dataset != "imagenet":
            raise ValueError(
                "--weights is for --dataset imagenet (other datasets train their classifiers)"
            )
        # without a file for DenseNet-169, only the supplied classifiers run
        overrides |= {
            "weights": weights,
            "classifiers": tuple(c for c in CLASSIFIERS["imagenet"] if c in weights),
        }
    if args.steps:
        overrides["train_steps"] = args.steps
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    with guarded_output(args, "reproduce", _RESULTS):
        t0 = time.perf_counter()
        results = run_zhang2020(
            dataset,
            profile=profile,
            out=out,
            data_root=args.data_root,
            device=device_of(args),
            progress=True,
            log=lambda m: say(f"[reproduce] {m}"),
            seed=args.seed,
            **overrides,
        )
        for c in results["claims"]:
            verdict = {True: "held", False: "did not hold", None: "not evaluated"}[c["held"]]
            print(f"finding {c['id']}: {verdict} — {c['claim']}")
        say(
            f"[reproduce] wrote {out}/report.html, results.json and config.json in {time.perf_counter() - t0:.1f} s"
        )
    return 0
