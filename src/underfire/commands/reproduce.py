"""`underfire reproduce STUDY`: rerun a paper's experiments end to end and write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from underfire.commands._common import (
    add_device,
    add_force,
    add_threads,
    device_of,
    invocation,
    positive_float,
    positive_int,
    say,
)

#: The paper reproductions (every registered study that takes no inputs from its caller may
#: be run here; these are the ones the help lists).
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
        help="ross2018: Ross & Doshi-Velez, AAAI 2018 (input-gradient regularization); "
        "zhang2020: Zhang et al., USENIX Security 2020 (ADV², attacks on interpreters); "
        "zheng2020: Zheng et al. 2020 (max vs average pooling, per-layer diagnosis)",
    )
    _add_study_options(p)
    add_force(
        p,
        "replace the results of a different reproduction already in --out (trained models "
        "with other settings must still be deleted by hand)",
    )
    add_device(p)
    p.set_defaults(func=run)


def _add_study_options(p: argparse.ArgumentParser) -> None:
    """The options studies take through ``configure`` (each study takes its own subset)."""
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
    p.add_argument("--seed", type=int, default=None, help="the seed (default 0)")
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
        "--training",
        choices=("natural", "pgd"),
        default=None,
        help="zheng2020: natural training (default) or Madry et al.'s PGD adversarial training "
        "at the grid's largest ε (the authors' own MNIST recipe; out: runs/zheng2020-DATASET-pgd)",
    )
    p.add_argument(
        "--adv-steps",
        type=positive_int,
        default=None,
        help="zheng2020 --training pgd: PGD steps per training batch (default 40, Madry et al.'s MNIST)",
    )
    _add_paper_options(p)


def _add_paper_options(p: argparse.ArgumentParser) -> None:
    """The options of one study each (λ, weights, images, models, raters) and the threads."""
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
        "--study",
        dest="human_study",
        default=None,
        metavar="STUDY",
        help="ross2018: a human-subject study folder (`underfire study`, analyzed) whose raters "
        "decide claim 5 in place of the model judges",
    )
    add_threads(p)


#: The command's options that a study's ``configure`` may take (None: not given).
OPTIONS = (
    "dataset",
    "profile",
    "data_root",
    "seed",
    "seeds",
    "gan_steps",
    "steps",
    "batch_size",
    "n_eval",
    "training",
    "adv_steps",
    "paper_lambda",
    "weights",
    "n_images",
    "models",
    "human_study",
)


def study_options(args: argparse.Namespace, accepted: set[str], study: str) -> dict[str, Any]:
    """The options the user gave, refused in one line where the study does not take them."""
    from underfire.core.errors import CommandError

    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k, None) is not None}
    if args.quick and "profile" not in given:
        given["profile"] = "quick"
    for name in given:
        if name not in accepted:
            raise CommandError(f"--{name.replace('_', '-')} does not apply to {study}")
    return given


def run(args: argparse.Namespace) -> int:
    import inspect

    from underfire.core.errors import CommandError
    from underfire.studies import get_study, run_study

    study = get_study(args.study)
    if study.inputs:
        raise CommandError(
            f"{study.name} takes {', '.join(study.inputs)} from its caller; run it with "
            f"`underfire {study.name}` or from Python"
        )
    accepted = set(inspect.signature(study.configure).parameters)
    config = study.configure(**study_options(args, accepted, study.name))
    if args.out is None:
        if study.default_out is None:
            raise CommandError(f"{study.name} needs --out")
        args.out = study.default_out(config)
    t0 = time.perf_counter()
    results = run_study(
        study,
        config,
        out=args.out,
        force=args.force,
        device=device_of(args),
        threads=args.threads,
        progress=True,
        log=lambda m: say(f"[reproduce] {m}"),
        command="reproduce",
        arguments=invocation(args),
        argv=" ".join(getattr(args, "argv", None) or ["reproduce", study.name]),
    )
    for line in study.summary(results):
        print(line, flush=True)
    say(
        f"[reproduce] wrote {args.out}/report.html, results.json and config.json in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 0
