"""The top-level parts of the ADV² reproduction after the setup: every classifier's
measurements, the findings and the run time."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from torch import nn

from underfire.core.state import model_state
from underfire.data import ImageDataset
from underfire.studies.base import StudyRun
from underfire.studies.zhang2020.claims import evaluate_claims
from underfire.studies.zhang2020.classifier import Attacked, attack_classifier, attacked_images
from underfire.studies.zhang2020.config import Zhang2020Config
from underfire.studies.zhang2020.countermeasures import ensemble_rows, rtsa_rows
from underfire.train import evaluate

__all__ = ["claims_part", "classifiers_part", "evaluate_classifier", "timings_part"]


def _accuracy(run: StudyRun, model: nn.Module, images: ImageDataset) -> float:
    return float(evaluate(model, images, device=run.device)["accuracy"])


def evaluate_classifier(run: StudyRun, name: str, model: nn.Module) -> dict[str, Any]:
    """Every measurement on one classifier (its figure's tensors go to
    ``run.state["figure_tensors"][name]``)."""
    cfg: Zhang2020Config = run.config
    t_all = time.perf_counter()
    a, res = attacked_images(run, name, model)
    parts = attack_classifier(a, res)
    timings = res["timings"]
    for key, rows in (("ensemble", ensemble_rows), ("rtsa", rtsa_rows)):
        t0 = time.perf_counter()
        row = rows(a, parts)
        if row is not None:
            res[key] = row
            timings[key] = round(time.perf_counter() - t0, 2)
    timings["total"] = round(time.perf_counter() - t_all, 2)
    run.state.setdefault("figure_tensors", {})[name] = _figure_tensors(a, parts, cfg.n_figure)
    return res


def _figure_tensors(a: Attacked, parts: dict[str, Any], n_figure: int) -> dict[str, Any]:
    n = min(n_figure, a.x.shape[0])
    benign, pgd = parts["benign"], parts["pgd"]
    return {
        "x": a.x[:n].cpu(),
        "y": a.y[:n].cpu(),
        "t": a.t[:n].cpu(),
        "benign": {k: v[:n] for k, v in benign.items()},
        "pgd_x": pgd["x_adv"][:n],
        "pgd_maps": {k: v[:n] for k, v in pgd["maps"].items()},
        "adv2": {k: (p["x_adv"][:n], p["maps"][k][:n]) for k, p in parts["adv2"].items()},
    }


def classifiers_part(run: StudyRun) -> dict[str, Any]:
    """``results["classifiers"]``: per classifier, its training, test accuracy and every
    measurement (the sub-parts inside are cached; this part is not)."""
    cfg: Zhang2020Config = run.config
    test: ImageDataset = run.state["test"]
    scored = test.subset(cfg.n_test) if cfg.n_test else test
    out: dict[str, Any] = {}
    for name in cfg.classifiers:
        model = run.state["classifiers"][name]
        entry: dict[str, Any] = {"training": run.state["training"][name]}
        # frozen: differentiating w.r.t. the input builds no parameter graph
        with model_state(model, freeze=True):
            entry["test_accuracy"] = run.cached(
                f"{name}/test-accuracy",
                partial(_accuracy, run, model, scored),
                reads=(),
                uses={"classifier": model, "images": scored},
                code=_accuracy,
            )
            entry["test_images"] = len(scored)
            run.log(f"{name}: test accuracy {entry['test_accuracy']:.3f}")
            entry |= evaluate_classifier(run, name, model)
        out[name] = entry
    return out


def claims_part(run: StudyRun) -> list[dict[str, Any]]:
    """The paper's findings, each decided by its rule from the numbers above."""
    return evaluate_claims(run.results)


def timings_part(run: StudyRun) -> dict[str, float]:
    """The run's wall time so far (the figures and the report follow)."""
    return {"total": round(run.elapsed(), 2)}
