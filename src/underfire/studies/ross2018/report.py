"""The report of the Ross & Doshi-Velez (AAAI 2018) reproduction: ``report.md``,
``report.html`` and the figures, from ``run.results`` and the figure data in ``run.state``;
one function per section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from underfire._version import __version__
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.claims import VERDICT, write_claims
from underfire.studies.ross2018.config import INSENSITIVE_DBL_LAMBDA, Ross2018Config
from underfire.studies.ross2018.figures import make_figures

__all__ = ["LABELS", "report", "summary"]

LABELS = {
    "normal": "Normal",
    "distilled": "Distilled (T=50)",
    "adv-trained": "Adv. trained (FGSM)",
    "gradreg": "Grad. regularized",
    "both": "Grad. reg. + adv.",
    "certainty-insensitive": "Certainty-insensitive",
    "insensitive-dbl": f"Insensitive (double backprop, λ={INSENSITIVE_DBL_LAMBDA:g})",
}


def summary(results: dict[str, Any]) -> list[str]:
    """One line per claim with its verdict, as the command line prints them."""
    return [f"claim {c['id']}: {VERDICT[c['held']]} — {c['claim']}" for c in results["claims"]]


def report(run: StudyRun) -> None:
    """Write the figures, ``report.md`` and ``report.html`` into ``run.out``."""
    if run.out is None:
        raise ValueError("the ross2018 report needs an output folder")
    cfg: Ross2018Config = run.config
    results = run.results
    run.log("figures and report")
    folder = run.out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    xs = run.state["x"][: cfg.n_saliency]
    ys = run.state["y"][: cfg.n_saliency]
    figs = make_figures(
        folder,
        results,
        run.state["gradient_statistics"],
        run.state["saliency_maps"],
        xs,
        ys,
        run.state["jsma_grids"],
        run.state["test"].classes,
    )
    r = Report(f"Reproduction of Ross & Doshi-Velez (AAAI 2018) on {cfg.dataset}")
    _introduction(r, cfg, results, str(run.device))
    r.section("Claims of the paper")
    write_claims(r, results["claims"], "claim")
    _clean(r, results)
    _transfer(r, cfg, results, figs)
    _blackbox(r, cfg, results, figs)
    _gradients(r, results, figs)
    _jsma(r, cfg, results, figs)
    _saliency(r, results, figs)
    _run_time(r, results["run"])
    r.write(run.out)


def _introduction(r: Report, cfg: Ross2018Config, results: dict[str, Any], device: str) -> None:
    init = (
        "Glorot-uniform, zero biases, as the authors’ TF-slim layers"
        if cfg.init == "paper"
        else "PyTorch default"
    )
    r.text(
        f"underfire {__version__}, profile `{cfg.profile}`, seed {cfg.seed}, device `{device}`. "
        f"Each model: {cfg.steps} Adam steps (lr {cfg.lr:g}) of batch {cfg.batch_size} "
        "(the paper: 15,000 steps of 256 at lr 2e-4). Gradient regularization "
        f"λ = {cfg.paper_lambda:g} in the paper's batch-averaged convention = {cfg.lam:.4g} per "
        f"example (gradreg and both; the authors do not publish their λ for both); "
        f"certainty-insensitive λ = {cfg.insensitive_lambda:g} = {cfg.insensitive_lam:.4g} per "
        f"example; distillation T = {cfg.temperature:g}; adversarial training FGSM "
        f"ε = {cfg.adv_eps:g}, ratio {cfg.adv_ratio:g} (both: the penalty on the clean inputs "
        "only, FGSM crafted on the training forward pass, as the authors' code). "
        f"Initialization: {cfg.init} ({init}). "
        f"Attacks on {results['n_eval']} test images. Every number here was computed by this "
        "run (`results.json`); the configuration is in `config.json`."
    )


def _clean(r: Report, results: dict[str, Any]) -> None:
    r.section("Clean accuracy")
    r.table(
        [
            {
                "model": LABELS[m],
                "test accuracy": v["accuracy"],
                "val accuracy": v["val_accuracy"],
                "train s": results["training"][m]["seconds"],
            }
            for m, v in results["clean"].items()
        ]
    )


def _transfer(
    r: Report, cfg: Ross2018Config, results: dict[str, Any], figs: dict[str, Path]
) -> None:
    eps = list(cfg.eps)
    sections = [
        ("fgsm", "FGSM (paper Fig. 1)"),
        ("tgsm", "TGSM (paper Fig. 3)"),
        ("itgsm", f"Iterated TGSM, {cfg.itgsm_steps} steps of ε/{cfg.itgsm_steps}"),
    ]
    for attack, title in sections:
        r.section(f"{title}: white-box and transferred accuracy")
        acc = results[attack]["accuracy"]
        r.table(
            [
                {"model": LABELS[m], **{f"ε={e:g}": acc[m][m][i] for i, e in enumerate(eps)}}
                for m in acc
            ]
        )
        r.text(
            "White-box accuracy above (diagonal of the transfer matrix); the figure has one "
            "panel per source model and one line per victim."
        )
        if "target_rate" in results[attack]:
            hit = results[attack]["target_rate"]
            r.text("White-box fraction classified as the target t = (y+1) mod K:")
            r.table(
                [
                    {"model": LABELS[m], **{f"ε={e:g}": hit[m][m][i] for i, e in enumerate(eps)}}
                    for m in hit
                ]
            )
        r.figure(figs[attack], f"{title}: accuracy vs ε, one panel per source model")
        mid = [i for i, e in enumerate(eps) if e > 0][:3]
        rows = [
            {"source": LABELS[s], "ε": eps[i], **{LABELS[v]: acc[s][v][i] for v in acc}}
            for s in acc
            for i in mid
        ]
        r.text("Transfer matrix at the smallest non-zero ε values (rows: source; columns: victim):")
        r.table(rows)


def _blackbox(
    r: Report, cfg: Ross2018Config, results: dict[str, Any], figs: dict[str, Path]
) -> None:
    r.section("White-box vs black-box (paper Fig. 2)")
    eps = list(cfg.eps)
    # one row per model and attack, ε across: 16 columns side by side overflowed the page
    r.table(
        [
            {
                "model": LABELS[m],
                "FGSM": kind,
                **{f"ε={e:g}": v[key][i] for i, e in enumerate(eps) if e > 0},
                "substitute agreement": v["substitute_agreement"] if key == "black_box" else "—",
            }
            for m, v in results["blackbox"].items()
            for kind, key in (("white-box", "white_box"), ("black-box", "black_box"))
        ]
    )
    r.figure(
        figs["blackbox"], "FGSM accuracy vs ε: white-box (left) and substitute black-box (right)"
    )


def _gradients(r: Report, results: dict[str, Any], figs: dict[str, Path]) -> None:
    r.section("Input-gradient norms and log-probabilities (paper Fig. 4)")
    r.table(
        [
            {
                "model": LABELS[m],
                "median ‖∇FGSM‖": g["fgsm_norm_median"],
                "median ‖∇TGSM‖": g["tgsm_norm_median"],
                "median log p (predicted)": g["log_prob_predicted_median"],
                "median log p (others)": g["log_prob_other_median"],
            }
            for m, g in results["gradients"].items()
        ]
    )
    r.figure(
        figs["gradients"],
        "Distributions of input-gradient L2 norms (FGSM and TGSM losses) and of "
        "log-probabilities, log scale",
    )


def _jsma(r: Report, cfg: Ross2018Config, results: dict[str, Any], figs: dict[str, Path]) -> None:
    r.section("JSMA (paper Fig. 5)")
    r.table(
        [
            {
                "model": LABELS[m],
                "success rate": v["success_rate"],
                "mean changed pixels": v["mean_l0"],
                "judges agree with target (mean)": v["judge_agreement"],
                **{f"judge {j}": a for j, a in v["judge_agreement_per_judge"].items()},
            }
            for m, v in results["jsma"].items()
        ]
    )
    r.text(
        f"JSMA differentiates the {cfg.jsma_on}. Judges (claim 5's proxy for human judgement): "
        "normally trained models of other architectures, never attacked; clean test accuracy "
        + ", ".join(f"{j} {v['accuracy']:.3f}" for j, v in results["judges"].items())
        + "."
    )
    for m in ("distilled", "gradreg"):
        if f"jsma_{m}" in figs:
            r.figure(
                figs[f"jsma_{m}"],
                f"JSMA against {LABELS[m]}: rows are a test 0 and 1, columns the target class",
            )


def _saliency(r: Report, results: dict[str, Any], figs: dict[str, Path]) -> None:
    r.section("Input-gradient saliency")
    r.table(
        [
            {"model": LABELS[m], "mean Gini of |∇x CE|": v["gini"]}
            for m, v in results["saliency"].items()
        ]
    )
    r.figure(
        figs["saliency"],
        "Input gradients of the cross-entropy for every model (red positive, blue negative)",
    )


def _run_time(r: Report, record: dict[str, Any]) -> None:
    parts = record["parts"]
    r.text(
        f"Run time: {record['seconds']:.1f} s ("
        + ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in parts.items() if v["seconds"] >= 0.05)
        + ")."
    )
    reused = record["reused"]
    if reused:
        r.text(
            f"Reused from an earlier run in this folder (same settings, models, data and code): "
            f"{len(reused)} cached results ({', '.join(reused)})."
        )
