"""The parts of the Ross & Doshi-Velez (AAAI 2018) reproduction, run in order by the runner.

Data loading and training are not cached (training resumes from its own checkpoints in
``out/models``) and put the data and models into ``run.state``. Every evaluation is cached
per model (or per source model of a transfer matrix) through ``run.cached``, keyed on the
config fields it reads and on the identity of every model and data tensor it uses: a
retrained or replaced model never has its old numbers reused. What the figures need beyond
``results.json`` (raw gradient statistics, saliency maps, JSMA grids) goes into
``run.state`` for the report.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.studies.base import Part, StudyRun
from underfire.studies.ross2018.claims import evaluate_claims
from underfire.studies.ross2018.evaluation import (
    blackbox_accuracy,
    chunks,
    first_of_classes,
    gini,
    gradient_statistics,
    input_gradients,
    jsma_grid,
    judge_agreement,
    quantiles,
    transfer_accuracy,
)
from underfire.studies.ross2018.training import load_data, train_judges, train_models
from underfire.train import evaluate

__all__ = ["PARTS"]


def _config(run: StudyRun) -> dict[str, Any]:
    return dict(run.config.to_dict())


def _data(run: StudyRun) -> int:
    """Load the splits into ``run.state``; the result is the number of attacked test images."""
    cfg = run.config
    train, val, test = load_data(cfg, cfg.data_root)
    run.log(
        f"{cfg.dataset}: {len(train)} train / {len(val)} val / {len(test)} test images, "
        f"profile {cfg.profile}"
    )
    n_eval = min(cfg.n_eval or len(test), len(test))
    run.state |= {
        "train": train,
        "val": val,
        "test": test,
        "x": test.x[:n_eval].to(run.device),
        "y": test.y[:n_eval].to(run.device),
    }
    return n_eval


def _training(run: StudyRun) -> dict[str, Any]:
    models, info = train_models(
        run.config,
        run.state["train"],
        run.state["val"],
        run.out,
        device=run.device,
        progress=run.progress,
        log=run.log,
    )
    run.state["models"] = models
    return info


def _models(run: StudyRun) -> dict[str, nn.Module]:
    models: dict[str, nn.Module] = run.state["models"]
    return models


def _clean_of(model: nn.Module, run: StudyRun) -> dict[str, Any]:
    result = evaluate(model, run.state["test"], device=run.device)
    result["val_accuracy"] = evaluate(model, run.state["val"], device=run.device)["accuracy"]
    return result


def _clean(run: StudyRun) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m, model in run.bar(_models(run).items(), "clean accuracy", len(_models(run))):
        out[m] = run.cached(
            f"clean/{m}",
            partial(_clean_of, model, run),
            reads=(),
            uses={"model": model, "test": run.state["test"], "val": run.state["val"]},
            code=_clean_of,
        )
    run.log("clean accuracy: " + ", ".join(f"{m} {r['accuracy']:.3f}" for m, r in out.items()))
    return out


def _transfer(attack: str, run: StudyRun) -> dict[str, Any]:
    """FGSM, TGSM or iterated TGSM transfer matrix, one cached row per source model (every
    row uses every model: the victims)."""
    cfg, models = run.config, _models(run)
    x, y = run.state["x"], run.state["y"]
    iterations = cfg.itgsm_steps if attack == "itgsm" else 1
    run.log(
        f"iterated TGSM ({cfg.itgsm_steps} steps) transfer matrix"
        if attack == "itgsm"
        else f"{attack.upper()} transfer matrix"
    )
    uses: dict[str, Any] = {f"model/{m}": model for m, model in models.items()} | {"x": x, "y": y}
    merged: dict[str, dict[str, Any]] = {}
    for source in run.bar(list(models), attack):
        row = run.cached(
            f"{attack}/{source}",
            partial(
                transfer_accuracy,
                models,
                x,
                y,
                list(cfg.eps),
                targeted=attack != "fgsm",
                iterations=iterations,
                batch_size=cfg.eval_batch,
                sources=[source],
            ),
            reads=("eps", "eval_batch", *(("itgsm_steps",) if attack == "itgsm" else ())),
            uses=uses,
            code=transfer_accuracy,
        )
        for key, value in row.items():
            merged.setdefault(key, {}).update(value)
    return merged


def _gradients(run: StudyRun) -> dict[str, Any]:
    """Medians and quantiles of input-gradient norms and log-probabilities (paper Fig. 4); the
    raw values go to ``run.state`` for the figure."""
    run.log("input-gradient norms and log-probabilities")
    x, y = run.state["x"], run.state["y"]
    raw = {}
    for m, model in run.bar(_models(run).items(), "gradients", len(_models(run))):
        raw[m] = run.cached(
            f"gradients/{m}",
            partial(gradient_statistics, {m: model}, x, y, batch_size=run.config.eval_batch),
            reads=("eval_batch",),
            uses={"model": model, "x": x, "y": y},
            code=gradient_statistics,
        )[m]
    run.state["gradient_statistics"] = raw
    keys = ("fgsm_norm", "tgsm_norm", "log_prob_other", "log_prob_predicted")
    summary = {}
    for m, s in raw.items():
        q = {k: quantiles(s[k]) for k in keys}
        summary[m] = {f"{k}_median": q[k]["median"] for k in keys} | q
    return summary


def _saliency_of(model: nn.Module, run: StudyRun) -> dict[str, Any]:
    """Mean Gini of |∇x CE| over the attacked images, and the maps of the figure's images."""
    x, y, cfg = run.state["x"], run.state["y"], run.config
    g = [input_gradients(model, x[sl], y[sl]) for sl in chunks(x.shape[0], cfg.eval_batch)]
    maps = input_gradients(model, x[: cfg.n_saliency], y[: cfg.n_saliency])
    return {"gini": float(gini(torch.cat(g)).mean()), "maps": maps}


def _saliency(run: StudyRun) -> dict[str, Any]:
    run.log("saliency (input gradients)")
    x, y = run.state["x"], run.state["y"]
    maps: dict[str, torch.Tensor] = {}
    out: dict[str, Any] = {}
    for m, model in run.bar(_models(run).items(), "saliency", len(_models(run))):
        value = run.cached(
            f"saliency/{m}",
            partial(_saliency_of, model, run),
            reads=("eval_batch", "n_saliency"),
            uses={"model": model, "x": x, "y": y},
            store="torch",
            code=_saliency_of,
        )
        maps[m] = value["maps"].to(run.device)
        out[m] = {"gini": value["gini"]}
    run.state["saliency_maps"] = maps
    return out


def _blackbox(run: StudyRun) -> dict[str, Any]:
    run.log("black-box (substitute) vs white-box FGSM")
    cfg, x, y = run.config, run.state["x"], run.state["y"]
    out = {}
    for m, model in run.bar(_models(run).items(), "black-box", len(_models(run))):
        out[m] = run.cached(
            f"blackbox/{m}",
            partial(
                blackbox_accuracy,
                model,
                x,
                y,
                list(cfg.eps),
                seed_size=cfg.substitute_seed_size,
                rounds=cfg.substitute_rounds,
                epochs=cfg.substitute_epochs,
                seed=cfg.seed,
                batch_size=cfg.eval_batch,
            ),
            reads=(
                "eps",
                "substitute_seed_size",
                "substitute_rounds",
                "substitute_epochs",
                "seed",
                "eval_batch",
            ),
            uses={"model": model, "x": x, "y": y},
            code=blackbox_accuracy,
        )
    return out


def _judge_accuracy(judge: nn.Module, run: StudyRun) -> dict[str, Any]:
    return {"accuracy": evaluate(judge, run.state["test"], device=run.device)["accuracy"]}


def _judges(run: StudyRun) -> dict[str, Any]:
    """Train (or reload) claim 5's independent judges and their clean test accuracy."""
    run.log("JSMA grids (0s and 1s to every class) and their independent judges")
    judges = train_judges(
        run.config,
        run.state["train"],
        run.state["val"],
        run.out,
        device=run.device,
        progress=run.progress,
        log=run.log,
    )
    run.state["judges"] = judges
    return {
        j: run.cached(
            f"judges/{j}",
            partial(_judge_accuracy, judge, run),
            reads=(),
            uses={"model": judge, "test": run.state["test"]},
            code=_judge_accuracy,
        )
        for j, judge in judges.items()
    }


def _jsma(run: StudyRun) -> dict[str, Any]:
    """JSMA from a test 0 and 1 to every class against the distilled and gradient-regularized
    models (paper Fig. 5), judged by the independent judges (not cached: they are live)."""
    cfg, models, test = run.config, _models(run), run.state["test"]
    x01, y01 = first_of_classes(test.x, test.y, [0, 1])
    x01, y01 = x01.to(run.device), y01.to(run.device)
    grids: dict[str, dict[str, torch.Tensor]] = {}
    out: dict[str, Any] = {}
    for m in ("distilled", "gradreg"):
        if m not in models:
            continue
        stored = run.cached(
            f"jsma/{m}",
            partial(
                jsma_grid,
                models[m],
                x01,
                y01,
                test.num_classes,
                theta=cfg.jsma_theta,
                gamma=cfg.jsma_gamma,
                on=cfg.jsma_on,
            ),
            reads=("dataset", "jsma_theta", "jsma_gamma", "jsma_on"),
            uses={"model": models[m], "x": x01, "y": y01},
            store="torch",
            code=jsma_grid,
        )
        grid = {k: v.to(run.device) for k, v in stored.items()}
        grids[m] = grid
        out[m] = {
            "success_rate": float(grid["success"][grid["todo"]].float().mean()),
            "mean_l0": float(grid["l0"][grid["todo"]].float().mean()),
            **judge_agreement(grid, run.state["judges"]),
            "predicted": grid["predicted"].tolist(),
            "l0": grid["l0"].tolist(),
        }
    run.state["jsma_grids"] = grids
    return out


def _human_study(run: StudyRun) -> dict[str, Any] | None:
    """The analysis of a human-subject study (`underfire study analyze`), when one is given:
    it decides claim 5's "people" half in place of the model judges."""
    folder = run.config.human_study
    if folder is None:
        return None
    path = Path(folder) / "analysis" / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `underfire study analyze {folder}` first, or leave --study out"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _claims(run: StudyRun) -> list[dict[str, Any]]:
    return evaluate_claims(run.results)


#: In order; results.json has one key per part (and the runner's "run").
PARTS = (
    Part("config", _config, cache=False),
    Part("n_eval", _data, cache=False),
    Part("training", _training, cache=False),
    Part("clean", _clean, cache=False),
    Part("fgsm", partial(_transfer, "fgsm"), cache=False),
    Part("tgsm", partial(_transfer, "tgsm"), cache=False),
    Part("itgsm", partial(_transfer, "itgsm"), cache=False),
    Part("gradients", _gradients, cache=False),
    Part("saliency", _saliency, cache=False),
    Part("blackbox", _blackbox, cache=False),
    Part("judges", _judges, cache=False),
    Part("jsma", _jsma, cache=False),
    Part("human_study", _human_study, cache=False),
    Part("claims", _claims, cache=False),
)
