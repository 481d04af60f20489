"""`underfire study`: build, serve, load-test, analyze and export a human-subject study."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from underfire.commands._common import add_force, invocation, positive_int, say

#: One line for `underfire --help` (read without building the full parser).
HELP = "a human-subject study of adversarial examples: build, serve, simulate, analyze, export"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "study",
        help=HELP,
        description="Ross & Doshi-Velez's human-subject study (claim 5): people choose which of "
        "two JSMA examples looks more like the target digit. See docs/study.md.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _register_build(sub)
    s = sub.add_parser("serve", help="serve the raters' page and store their answers")
    s.add_argument("study", type=Path, help="the study folder")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=positive_int, default=8000, help="port (default: 8000)")
    s.add_argument(
        "--admin-token",
        default=os.environ.get("UNDERFIRE_STUDY_ADMIN_TOKEN"),
        help="token of the admin endpoints (default: $UNDERFIRE_STUDY_ADMIN_TOKEN or a new "
        "random one, printed at start)",
    )
    s.add_argument(
        "--completion-code", default=None, help="code shown at the end (default: the manifest's)"
    )
    s.add_argument(
        "--fsync",
        action="store_true",
        help="wait for the disk at every answer (survives power loss)",
    )
    s.set_defaults(func=serve)
    m = sub.add_parser("simulate", help="load a served study with simulated raters (loopback)")
    m.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
    m.add_argument(
        "--raters", type=positive_int, default=50, help="concurrent raters (default: 50)"
    )
    m.add_argument(
        "--answers", type=positive_int, default=20, help="answers per rater (default: 20)"
    )
    m.add_argument(
        "--timeout",
        type=positive_int,
        default=120,
        help="stop after this many seconds (default: 120)",
    )
    m.add_argument("--seed", type=int, default=None, help="seed of the raters' names and choices")
    m.add_argument(
        "--allow-remote", action="store_true", help="allow an address that is not loopback"
    )
    m.add_argument(
        "--record",
        type=Path,
        default=None,
        help="write the acknowledged (rater, item) pairs to this JSON file",
    )
    m.set_defaults(func=simulate)
    a = sub.add_parser(
        "analyze", help="exclusions and statistics: STUDY/analysis/report.html, results.json"
    )
    a.add_argument("study", type=Path, help="the study folder")
    a.add_argument(
        "--bootstrap", type=positive_int, default=2000, help="bootstrap resamples (default: 2000)"
    )
    a.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    a.set_defaults(func=analyze)
    e = sub.add_parser("export", help="the answers as CSV, one row per answer")
    e.add_argument("study", type=Path, help="the study folder")
    e.add_argument("--csv", type=Path, required=True, help="the CSV file to write")
    e.set_defaults(func=export)


def _register_build(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build", help="craft the stimuli and write a study folder")
    source = b.add_mutually_exclusive_group(required=True)
    source.add_argument("--quick", action="store_true", help="train small digits models (seconds)")
    source.add_argument(
        "--from", dest="folder", type=Path, help="a `reproduce ross2018` output folder"
    )
    source.add_argument(
        "--checkpoint",
        dest="checkpoints",
        type=str,
        action="append",
        help="a model checkpoint (twice or more)",
    )
    b.add_argument("--out", type=Path, required=True, help="the study folder to write")
    b.add_argument(
        "--models",
        default=None,
        help="with --from: comma-separated models (default: normal,distilled,gradreg)",
    )
    b.add_argument(
        "--dataset", default=None, help="data set of the source images (default: the models')"
    )
    b.add_argument("--data-root", type=Path, default=None, help="folder holding the data sets")
    b.add_argument("--pairs", type=positive_int, default=8, help="source images kept (default: 8)")
    b.add_argument(
        "--candidates",
        type=positive_int,
        default=360,
        help="test images attacked to find them (default: 360)",
    )
    b.add_argument("--checks", type=int, default=2, help="attention checks per rater (default: 2)")
    b.add_argument(
        "--epochs", type=positive_int, default=4, help="--quick: training epochs (default: 4)"
    )
    b.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_force(b, "replace a different build in --out (never one with answers)")
    b.set_defaults(func=build)


def build(args: argparse.Namespace) -> int:
    from underfire.studies import run_study
    from underfire.studies.human import STUDY, configure

    config = configure(
        quick=args.quick,
        folder=args.folder,
        checkpoints=args.checkpoints or (),
        models=args.models.split(",") if args.models else (),
        dataset=args.dataset,
        data_root=args.data_root,
        seed=args.seed,
        epochs=args.epochs,
        pairs=args.pairs,
        candidates=args.candidates,
        checks=args.checks,
    )
    results = run_study(
        STUDY,
        config,
        out=args.out,
        force=args.force,
        progress=True,
        log=lambda m: say(f"[study build] {m}"),
        command="study build",
        arguments=invocation(args),
    )
    for line in STUDY.summary(results):
        say(f"[study build] {line}")
    say(f"[study build] wrote {args.out}; serve it with: underfire study serve {args.out}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from underfire.raters.server import serve as run_server

    run_server(
        args.study,
        host=args.host,
        port=args.port,
        admin_token=args.admin_token,
        fsync=args.fsync,
        completion_code=args.completion_code,
        say=say,
    )
    return 0


def simulate(args: argparse.Namespace) -> int:
    from underfire.core import io as _io
    from underfire.raters.simulate import simulate as run_simulation

    result = run_simulation(
        args.url,
        raters=args.raters,
        answers=args.answers,
        timeout=args.timeout,
        allow_remote=args.allow_remote,
        seed=args.seed,
    )
    acknowledged = result.pop("answers")
    if args.record is not None:
        _io.write_json(args.record, [list(pair) for pair in acknowledged])
    print(json.dumps(result), flush=True)
    return 0


def analyze(args: argparse.Namespace) -> int:
    from underfire.studies.human.analysis import analyze as run_analysis

    results = run_analysis(args.study, reps=args.bootstrap, seed=args.seed)
    for name, p in results["pairs"].items():
        rate = "—" if p["rate_a"] is None else f"{p['rate_a']:.1%}"
        say(
            f"[study analyze] {name}: chose {p['a']} {rate} of {p['n_answers']} answers, p = {p['p_value']:.3g}"
        )
    say(
        f"[study analyze] {results['n_answers']} answers from {results['n_raters']} raters "
        f"({results['n_excluded']} excluded); wrote {args.study / 'analysis'}/report.html and results.json"
    )
    return 0


def export(args: argparse.Namespace) -> int:
    from underfire.core import io as _io
    from underfire.raters.manifest import DATABASE, read_manifest
    from underfire.raters.store import AnswerStore, export_csv

    manifest = read_manifest(args.study)
    store = AnswerStore(args.study / DATABASE, readonly=True)
    try:
        rows = store.rows()
    finally:
        store.close()
    _io.write_text(args.csv, export_csv(rows, manifest))
    say(f"[study export] {len(rows)} answers to {args.csv}")
    return 0
