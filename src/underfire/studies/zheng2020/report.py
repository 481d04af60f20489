"""The report of the Zheng et al. (2020) reproduction: every sentence about the outcome is
chosen from the computed verdicts in ``results`` (see
:func:`underfire.studies.zheng2020.claims.verdict`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from underfire._version import __version__
from underfire.report import Report
from underfire.studies.base import StudyRun
from underfire.studies.zheng2020.config import Zheng2020Config
from underfire.studies.zheng2020.figures import make_figures, short_layer

__all__ = ["outcome_sentence", "report", "summary", "write_report"]

_WINNER = {
    "avg": "average pooling higher, beyond the seed spread",
    "max": "max pooling higher, beyond the seed spread",
    "within spread": "difference within the seed spread",
    "one seed": "one seed: spread unknown",
}


def _ms(s: dict[str, float]) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f} [{s['min']:.3f}, {s['max']:.3f}]"


def _eps(e: float, dataset: str) -> str:
    return f"{round(e * 255)}/255" if dataset == "cifar10" and e > 0 else f"{e:g}"


def outcome_sentence(comparison: dict[str, Any], n_seeds: int) -> str:
    """The report's answer to "did average pooling come out more robust here?", from the verdicts."""
    h = comparison["headline"]
    f, p = comparison["fgsm"], comparison["pgd"]
    nums = (
        f"mean accuracy over ε > 0, average − max pooling: FGSM {f['difference']:+.3f} "
        f"({f['seeds_favouring_avg']}/{n_seeds} seeds favour average pooling), PGD "
        f"{p['difference']:+.3f} ({p['seeds_favouring_avg']}/{n_seeds})"
    )
    if n_seeds < 2:
        return (
            "**Not decidable with one seed**: the seed spread is unknown; rerun with several "
            f"`--seeds` ({nums})."
        )
    text = {
        "avg": "**Yes: average pooling came out more robust here**, under both FGSM and PGD, and "
        "the difference exceeds the seed spread (every average-pooling seed above every "
        "max-pooling seed)",
        "max": "**No: max pooling came out more robust here**, under both FGSM and PGD, beyond "
        "the seed spread — the opposite of the paper's finding",
        "mixed": "**Mixed**: each variant wins one attack beyond the seed spread",
        "partial-avg": "**Partly**: average pooling is more robust beyond the seed spread under "
        + ("FGSM" if h["fgsm"] == "avg" else "PGD")
        + " only; under the other attack the difference is within the spread",
        "partial-max": "**No**: max pooling is more robust beyond the seed spread under "
        + ("FGSM" if h["fgsm"] == "max" else "PGD")
        + " and the other attack shows no difference beyond the spread",
        "no difference": "**Not established here**: under neither attack does the difference "
        "between average and max pooling exceed the seed spread",
    }[h["outcome"]]
    return f"{text} ({nums})."


def _layer_list(names: list[str]) -> str:
    return ", ".join(f"`{short_layer(n)}`" for n in names) if names else "none"


def _diagnosis_section(
    r: Report, cfg: Zheng2020Config, results: dict[str, Any], figs: dict[str, Path]
) -> None:
    diag = results["diagnosis"]
    s, f = diag["summary"], diag["summary"]["findings"]
    first = next(iter(diag["models"].values()))
    source = first["information_source"]
    r.section("Per-layer diagnosis")
    r.text(
        f"Each model is attacked by its own PGD examples (ε = {_eps(cfg.diag_eps, cfg.dataset)}, "
        f"{cfg.pgd_steps} steps) on the first {first['n']} test images and diagnosed with "
        "`underfire.diagnosis.layer_vulnerability` (definitions in docs/diagnosis.md): "
        "**information loss** = fraction of the clean images' variance not recovered from the "
        f"layer's features (here by {'an InterpretGAN generator' if source == 'interpretgan' else 'a cross-validated linear ridge probe'}); "
        "**amplification** = mean ‖h(x′) − h(x)‖/‖h(x)‖; **growth** = amplification over the previous "
        "layer's (input first); **restored (top 10%)** = share of the lost correct-class "
        "probability that comes back when only the 10% most changed units of the layer get their "
        "clean values. Mean ± std over seeds."
    )
    for measures in (
        (("information_loss", "info loss"), ("amplification", "amplification")),
        (("growth", "growth"), ("restored_topk", "restored top 10%")),
    ):
        rows = []
        for i, layer in enumerate(s["layers"]):
            row: dict[str, Any] = {"layer": short_layer(layer)}
            for m, label in measures:
                for pool in ("max", "avg"):
                    st = s["stats"][pool][m][i]
                    row[f"{label}, {pool}"] = f"{st['mean']:.3f} ± {st['std']:.3f}" if st else "n/a"
                if m in s["verdicts"]:
                    row[f"{label}: higher"] = s["verdicts"][m][i]
            rows.append(row)
        r.table(rows)
    r.text(
        "Columns **higher**: which variant has the larger value at that layer by the seed-range rule "
        "(`avg`/`max`: ranges over seeds do not overlap; `within spread` otherwise)."
    )
    rho = f["rho_mean"]
    lines = [
        f"- Layers where **average** pooling loses more information: {_layer_list(f['avg_loses_more'])}; "
        f"where **max** pooling loses more: {_layer_list(f['max_loses_more'])} (beyond the seed spread).",
        f"- Layers where the adversarial features move more (amplification) under average pooling: "
        f"{_layer_list(f['avg_amplifies_more'])}; under max pooling: {_layer_list(f['max_amplifies_more'])}.",
        f"- The variant losing more information also amplifies more at: {_layer_list(f['loss_and_amplification_agree'])}; "
        f"the opposite at: {_layer_list(f['loss_and_amplification_disagree'])}.",
        f"- The layer adding the most information loss: max pooling `{short_layer(f['largest_own_loss']['max'] or '-')}`, "
        f"average pooling `{short_layer(f['largest_own_loss']['avg'] or '-')}`.",
    ]
    if rho is not None:
        lines.append(
            f"- Across layers, information loss and amplification have Spearman ρ = {rho:+.2f} on "
            f"average over the {f['rho_models']} models ({f['rho_positive']} with ρ > 0): "
            + (
                "layers that lose more information are the ones whose features the attack moves more, "
                "as the paper states."
                if f["rho_positive"] == f["rho_models"] and rho > 0
                else "the paper's link (more information lost → more vulnerable) is not consistent here."
            )
        )
    r.text("\n".join(lines))
    r.figure(figs["diagnosis"], "Per-layer diagnosis, max (red) vs average (blue) pooling")
    _interpretgan_section(r, cfg, diag.get("interpretgan") or {}, figs)


def _interpretgan_section(
    r: Report, cfg: Zheng2020Config, gans: dict[str, Any], figs: dict[str, Path]
) -> None:
    r.section("InterpretGAN: what each layer sees", level=3)
    if not gans:
        r.text("No InterpretGAN in this run (`gan_steps` = 0).")
        return
    r.text(
        f"One InterpretGAN (`underfire.diagnosis.train_interpretgan`, {cfg.gan_steps} steps per layer, "
        f"batch {cfg.gan_batch}) per variant, for the seed-{cfg.seeds[0]} models, at the diagnosed layers. "
        "Per layer, on the diagnosed test images: **FVU** = information loss by the generator; "
        "**clean consistency** = generated-from-clean images labelled as the classifier labels the "
        "input; **PGD → true class** = generated-from-adversarial images still labelled with the true "
        "class (the perturbation has not yet turned into another class's features there); "
        "**PGD consistency** = labelled as the classifier labels the adversarial input."
    )
    rows = []
    for name, g in gans.items():
        for layer, v in g["layers"].items():
            rows.append(
                {
                    "model": name,
                    "layer": short_layer(layer),
                    "FVU": v["fvu"],
                    "clean consistency": v["clean_consistency"],
                    "PGD → true class": v["adv_true"],
                    "PGD consistency": v["adv_consistency"],
                }
            )
    r.table(rows)
    names = list(gans)
    if len(names) == 2:
        flips = {
            n: next(
                (short_layer(k) for k, v in gans[n]["layers"].items() if v["adv_true"] < 0.5), None
            )
            for n in names
        }
        r.text(
            "First layer where most generated-from-adversarial images are no longer labelled with the "
            "true class: "
            + "; ".join(f"{n}: `{flips[n] or 'none'}`" for n in names)
            + ". Mean FVU over layers: "
            + "; ".join(
                f"{n} {sum(v['fvu'] for v in gans[n]['layers'].values()) / len(gans[n]['layers']):.3f}"
                for n in names
            )
            + "."
        )
    for name in names:
        key = f"interpretgan_{name}"
        if key in figs:
            r.figure(
                figs[key],
                f"InterpretGAN images of {name}: per image, clean row then PGD row; columns: input, then "
                "each layer (titles: the classifier's label; green = true class)",
            )


def summary(results: dict[str, Any]) -> list[str]:
    """What the command line prints at the end: the answer to the study's question."""
    seeds = len(results["config"]["seeds"])
    return [outcome_sentence(results["comparison"], seeds).replace("**", "")]


def report(run: StudyRun) -> None:
    """The figures, ``report.md`` and ``report.html`` of a finished run, into ``run.out``."""
    if run.out is None:
        raise ValueError("the zheng2020 report needs an output folder")
    run.log("figures and report")
    figs = make_figures(
        run.figure_path,
        run.results,
        run.state.get("gan_pictures"),
        run.state["test"].classes,
    )
    write_report(run.out, run.config, run.results, figs)


def _training_words(cfg: Zheng2020Config) -> str:
    if cfg.training == "natural":
        return "natural training (clean images)"
    return (
        f"PGD adversarial training (Madry et al. 2018: PGD examples only, ε = {max(cfg.eps):.4g}, "
        f"{cfg.adv_steps} steps of 2.5ε/{cfg.adv_steps}, random start)"
    )


def write_report(
    out: Path, cfg: Zheng2020Config, results: dict[str, Any], figs: dict[str, Path]
) -> None:
    """``report.md`` and ``report.html`` in ``out`` from ``results`` and the figures."""
    r = Report(
        f"Reproduction of Zheng, Zhang, Lee & Prakash (2020) on {cfg.dataset}: "
        "max vs average pooling"
    )
    r.text(
        f"underfire {__version__}, profile `{cfg.profile}`, device `{results['device']}`. "
        f"Model: `ross-cnn` (conv 5×5×32 → BN → ReLU → **pool** → conv 5×5×64 → BN → ReLU → **pool** → "
        f"FC {cfg.hidden} → FC 10), with 2×2 max or average pooling; nothing else differs. "
        f"Each model: {cfg.steps} Adam steps of batch {cfg.batch_size}, lr {cfg.lr:g} with cosine decay, "
        f"{_training_words(cfg)}; seeds {list(cfg.seeds)} — both variants of a seed share the initialization and batch order. "
        f"Clean accuracy on the {results['n_test']} test images; white-box L∞ FGSM and PGD "
        f"({cfg.pgd_steps} steps of 2.5ε/{cfg.pgd_steps}, random start) on the first {results['n_eval']}. "
        "Every number was computed by this run (`results.json`; settings in `config.json`)."
    )
    _outcome_section(r, cfg, results["comparison"], figs)
    _curves_section(r, cfg, results["comparison"], figs)
    _diagnosis_section(r, cfg, results, figs)
    _models_section(r, cfg, results)
    r.write(out)


def _outcome_section(
    r: Report, cfg: Zheng2020Config, comp: dict[str, Any], figs: dict[str, Path]
) -> None:
    n_seeds = len(cfg.seeds)
    r.section("Did average pooling come out more robust?")
    r.text(outcome_sentence(comp, n_seeds))
    r.text(
        "Rule: a model's robustness score is its mean accuracy over the ε > 0 of the grid. The "
        "difference between the variants **exceeds the seed spread** when the ranges over seeds do "
        "not overlap (every seed of one variant scores above every seed of the other); otherwise "
        "it is **within the spread**. The paper's claim (average pooling more robust) holds here "
        "only if average pooling wins beyond the spread under both FGSM and PGD. Values are "
        "mean ± sample std [min, max] over seeds."
    )
    rows = []
    for key, label in (("clean", "clean accuracy"), ("fgsm", "FGSM score"), ("pgd", "PGD score")):
        v = comp[key]
        rows.append(
            {
                "measure": label,
                "max pooling": _ms(v["max"]),
                "average pooling": _ms(v["avg"]),
                "avg − max": f"{v['difference']:+.3f}",
                "seeds avg > max": f"{v['seeds_favouring_avg']}/{n_seeds}",
                "verdict": _WINNER[v["winner"]],
            }
        )
    r.table(rows)
    r.text(
        f"Paper claim (REFERENCE §2: average pooling more robust on MNIST and CIFAR-10): "
        f"**{'held' if comp['headline']['paper_claim_held'] else 'did not hold'}** in this run."
    )
    r.figure(figs["seeds"], "Per seed: max (red) and average (blue) pooling joined by a line")


def _curves_section(
    r: Report, cfg: Zheng2020Config, comp: dict[str, Any], figs: dict[str, Path]
) -> None:
    r.section("Robust accuracy over ε")
    for attack, title in (("fgsm", "FGSM"), ("pgd", f"PGD, {cfg.pgd_steps} steps")):
        curves = comp["curves"][attack]
        r.text(f"**{title}** (accuracy, mean ± std over {len(cfg.seeds)} seeds):")
        r.table(
            [
                {
                    "ε": _eps(e, cfg.dataset),
                    "max pooling": f"{curves['max']['mean'][i]:.3f} ± {curves['max']['std'][i]:.3f}",
                    "average pooling": f"{curves['avg']['mean'][i]:.3f} ± {curves['avg']['std'][i]:.3f}",
                    "verdict": _WINNER[comp["per_eps"][attack][i]],
                }
                for i, e in enumerate(cfg.eps)
            ]
        )
    r.figure(
        figs["robust"], "Accuracy vs ε: mean over seeds (thick), each seed (thin), min–max band"
    )


def _models_section(r: Report, cfg: Zheng2020Config, results: dict[str, Any]) -> None:
    r.section("Every model")
    r.table(
        [
            {
                "model": name,
                "clean": m["clean"],
                "val (end of training)": results["training"][name]["val_accuracy"],
                **{
                    f"PGD ε={_eps(e, cfg.dataset)}": m["pgd"][i]
                    for i, e in enumerate(cfg.eps)
                    if e > 0
                },
                "train s": results["training"][name]["seconds"],
            }
            for name, m in results["models"].items()
        ]
    )
    warns = {
        n: m["soundness_warnings"] for n, m in results["models"].items() if m["soundness_warnings"]
    }
    if warns:
        r.text(
            "Soundness warnings of the robustness evaluation (Carlini et al. 2019): "
            + "; ".join(f"{n}: {' | '.join(w)}" for n, w in warns.items())
        )
    else:
        r.text("No soundness warning (accuracy never rose with ε; PGD never weaker than FGSM).")
    run = results["run"]
    reused = run["reused"]
    r.text(
        f"Run time of this invocation: {run['seconds']:.1f} s ("
        + ", ".join(
            f"{k} {v['seconds']:.1f} s" for k, v in run["parts"].items() if v["seconds"] >= 0.05
        )
        + "); models trained earlier are reloaded from `models/`, and "
        + (
            f"{len(reused)} cached results were reused ({', '.join(f'`{n}`' for n in reused)}): "
            "they cost nothing here"
            if reused
            else "no cached result was reused"
        )
        + " (training times are summed over every session of a model's training)."
    )
