"""Per-layer diagnosis of the max- and average-pooling models (Zheng et al. 2020).

Each model is diagnosed on PGD examples of its own (white-box, ε = ``diag_eps``) with
:func:`underfire.diagnosis.layer_vulnerability` at the default ``ross-cnn`` layers (both conv
blocks, both poolings, the hidden FC layer). The per-layer figures are then summarized over
seeds per variant, and the two per-layer questions of the paper are answered by rules:

* *which layers lose more information*: at each layer, the information loss of the two
  variants is compared with the seed-range rule of
  :func:`underfire.studies.zheng2020.claims.verdict`;
* *does information loss go with vulnerability*: per model, Spearman's ρ across layers
  between information loss and amplification (from the library); summarized as the mean ρ
  and the number of models with ρ > 0.

The part ``diagnosis`` caches each model's diagnosis as the sub-part ``diagnosis/<model>``
and each InterpretGAN's views as ``interpretgan/<model>``, keyed on the classifier's and the
generators' weights and the test data. The InterpretGANs train (resumably) through their own
checkpoints in ``OUT/interpretgan``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from underfire.attacks import PGD
from underfire.core.state import model_state
from underfire.diagnosis import (
    InterpretGAN,
    InterpretGANConfig,
    evaluate_interpretgan,
    layer_vulnerability,
    train_interpretgan,
)
from underfire.studies.base import StudyRun
from underfire.studies.zheng2020.claims import seed_stats, verdict
from underfire.studies.zheng2020.config import POOLINGS, Zheng2020Config

__all__ = [
    "MEASURES",
    "diagnose_model",
    "diagnosis",
    "interpretgan_views",
    "summarize_diagnosis",
]

#: Per-layer measures summarized over seeds (keys of ``LayerVulnerability.to_dict()``).
MEASURES = ("information_loss", "amplification", "growth", "restored_topk", "broken_topk")


def diagnose_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    pgd_steps: int,
    seed: int,
    layers: Sequence[str | nn.Module] | None = None,
    batch_size: int = 256,
    interpretgan: Any = None,
) -> dict[str, Any]:
    """PGD examples of ``x`` at ``eps`` against ``model``, then the per-layer diagnosis.

    Returns:
        ``LayerVulnerability.to_dict()`` (NaN as None) plus ``"eps"``.
    """
    x_adv = PGD(eps=eps, steps=pgd_steps, seed=seed)(model, x, y)
    diag = layer_vulnerability(
        model,
        x,
        x_adv,
        None if layers is None else list(layers),
        y=y,
        interpretgan=interpretgan,
        batch_size=batch_size,
    )
    return diag.to_dict() | {"eps": float(eps)}


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def summarize_diagnosis(
    per_model: dict[str, dict[str, Any]], seeds: Sequence[int]
) -> dict[str, Any]:
    """Per variant and layer, the mean ± std over seeds of each of :data:`MEASURES`; per
    layer, the verdict of the seed-range rule on information loss and amplification; and the
    correlation summary.

    Returns:
        ``{"layers": [...], "stats": {pool: {measure: [stats per layer]}}, "verdicts":
        {measure: [winner per layer]}, "correlation": {pool: stats of ρ}, "findings": {...}}``
        where a verdict ``"avg"`` means average pooling has the *higher* value.
    """
    first = per_model[f"max-seed{seeds[0]}"]
    layers = list(first["layers"])
    out: dict[str, Any] = {"layers": layers, "stats": {}, "verdicts": {}, "correlation": {}}
    for pool in ("max", "avg"):
        out["stats"][pool] = {}
        for m in MEASURES:
            rows = []
            for i in range(len(layers)):
                vals = _finite([_num(per_model[f"{pool}-seed{s}"][m][i]) for s in seeds])
                rows.append(seed_stats(vals) if vals else None)
            out["stats"][pool][m] = rows
        rhos = _finite([_num(per_model[f"{pool}-seed{s}"]["correlation"]) for s in seeds])
        out["correlation"][pool] = (
            seed_stats(rhos) | {"positive": sum(r > 0 for r in rhos)} if rhos else None
        )
    for m in ("information_loss", "amplification"):
        winners = []
        for i in range(len(layers)):
            a = [_num(per_model[f"avg-seed{s}"][m][i]) for s in seeds]
            b = [_num(per_model[f"max-seed{s}"][m][i]) for s in seeds]
            ok = all(math.isfinite(v) for v in a + b)
            winners.append(verdict(a, b)["winner"] if ok else "undefined")
        out["verdicts"][m] = winners
    out["findings"] = _findings(out, per_model, seeds)
    return out


def _findings(
    summary: dict[str, Any], per_model: dict[str, Any], seeds: Sequence[int]
) -> dict[str, Any]:
    """The per-layer answers, computed: where each variant loses more information, where its
    features move more, and whether the two go together."""
    layers = summary["layers"]
    info, amp = summary["verdicts"]["information_loss"], summary["verdicts"]["amplification"]
    stats = summary["stats"]
    # the layer (of each variant) whose own information loss Iₗ − Iₗ₋₁ is largest, seed mean
    most_lost = {}
    for pool in ("max", "avg"):
        means = [s["mean"] if s else float("nan") for s in stats[pool]["information_loss"]]
        gains = [b - a for a, b in zip([0.0, *means[:-1]], means, strict=True)]
        finite = [(g, i) for i, g in enumerate(gains) if math.isfinite(g)]
        most_lost[pool] = layers[max(finite)[1]] if finite else None
    # does the variant that loses more information at a layer also show more amplification there?
    agree = [
        i
        for i in range(len(layers))
        if info[i] in ("avg", "max") and amp[i] in ("avg", "max") and info[i] == amp[i]
    ]
    disagree = [
        i
        for i in range(len(layers))
        if info[i] in ("avg", "max") and amp[i] in ("avg", "max") and info[i] != amp[i]
    ]
    all_rho = _finite([_num(per_model[n]["correlation"]) for n in per_model])
    return {
        "avg_loses_more": [layers[i] for i, w in enumerate(info) if w == "avg"],
        "max_loses_more": [layers[i] for i, w in enumerate(info) if w == "max"],
        "avg_amplifies_more": [layers[i] for i, w in enumerate(amp) if w == "avg"],
        "max_amplifies_more": [layers[i] for i, w in enumerate(amp) if w == "max"],
        "largest_own_loss": most_lost,
        "loss_and_amplification_agree": [layers[i] for i in agree],
        "loss_and_amplification_disagree": [layers[i] for i in disagree],
        "rho_mean": sum(all_rho) / len(all_rho) if all_rho else None,
        "rho_positive": sum(r > 0 for r in all_rho),
        "rho_models": len(all_rho),
    }


def interpretgan_views(
    gan: InterpretGAN,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    *,
    n_images: int,
    batch_size: int = 256,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What an InterpretGAN shows of clean and adversarial images, layer by layer.

    Numbers per layer (over all of ``x``): ``fvu`` (information loss by the generator),
    ``clean_consistency`` (generated-from-clean images the classifier labels as it labels x),
    ``adv_true`` (generated-from-adversarial images labelled with the true class y: the
    perturbation has not yet become another class's features at that layer) and
    ``adv_consistency`` (labelled as the classifier labels x′). Pictures: the first
    ``n_images`` images the model classifies correctly and the attack fools.

    Returns:
        (numbers, pictures) with pictures ``{"x", "x_adv", "y", "pred_adv": (k,), "clean":
        {layer: images}, "adv": {layer: images}, "clean_label", "adv_label": {layer: (k,)}}``.
    """
    clean = evaluate_interpretgan(gan, model, x, y, batch_size=batch_size)
    adv = evaluate_interpretgan(gan, model, x_adv, y, batch_size=batch_size)
    numbers = {
        layer: {
            "fvu": clean[layer]["fvu"],
            "clean_consistency": clean[layer]["consistency"],
            "adv_true": adv[layer]["accuracy"],
            "adv_consistency": adv[layer]["consistency"],
        }
        for layer in gan.layers
    }
    with model_state(model, mode="eval", freeze=True), torch.no_grad():
        pred, pred_adv = model(x).argmax(1), model(x_adv).argmax(1)
    idx = ((pred == y) & (pred_adv != y)).nonzero().flatten()[:n_images]
    if idx.numel() < n_images:  # too few fooled: fill with the first other images
        rest = [i for i in range(x.shape[0]) if i not in set(idx.tolist())]
        idx = torch.cat([idx, torch.tensor(rest[: n_images - idx.numel()], dtype=idx.dtype)])
    xs, xa = x[idx], x_adv[idx]
    g_clean, g_adv = gan.generate(model, xs), gan.generate(model, xa)
    with model_state(model, mode="eval", freeze=True), torch.no_grad():
        labels_clean = {k: model(v).argmax(1).cpu() for k, v in g_clean.items()}
        labels_adv = {k: model(v).argmax(1).cpu() for k, v in g_adv.items()}
    pictures = {
        "x": xs.cpu(),
        "x_adv": xa.cpu(),
        "y": y[idx].cpu(),
        "pred_adv": pred_adv[idx].cpu(),
        "clean": {k: v.cpu() for k, v in g_clean.items()},
        "adv": {k: v.cpu() for k, v in g_adv.items()},
        "clean_label": labels_clean,
        "adv_label": labels_adv,
    }
    return numbers, pictures


def _diagnosed(run: StudyRun) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_diag`` test images and their labels, on the run's device."""
    test = run.state["test"]
    n = min(run.config.n_diag, len(test))
    return test.x[:n].to(run.device), test.y[:n].to(run.device)


def _diagnose(run: StudyRun, name: str) -> dict[str, Any]:
    """Sub-part ``diagnosis/<name>``: the model's per-layer diagnosis on its own PGD examples."""
    cfg: Zheng2020Config = run.config
    x, y = _diagnosed(run)
    return diagnose_model(
        run.state["classifiers"][name],
        x,
        y,
        eps=cfg.diag_eps,
        pgd_steps=cfg.pgd_steps,
        seed=int(name.rsplit("seed", 1)[1]),
        layers=cfg.layers,
        batch_size=cfg.eval_batch,
    )


def _diagnose_all(run: StudyRun) -> dict[str, dict[str, Any]]:
    models: dict[str, nn.Module] = run.state["classifiers"]
    result: dict[str, dict[str, Any]] = {}
    for name in run.bar(list(models), "diagnose"):
        result[name] = run.cached(
            f"diagnosis/{name}",
            lambda name=name: _diagnose(run, name),  # type: ignore[misc]
            reads=("diag_eps", "pgd_steps", "n_diag", "layers", "eval_batch"),
            uses={"model": models[name], "test": run.state["test"]},
            code=_diagnose,
        )
        rho = result[name]["correlation"]
        run.log(
            f"{name}: information loss "
            + ", ".join(
                f"{v:.3f}" if v is not None else "nan" for v in result[name]["information_loss"]
            )
            + (f"; ρ(loss, amplification) {rho:+.2f}" if rho is not None else "")
        )
    return result


def _gan_views(run: StudyRun, name: str, gan: InterpretGAN) -> dict[str, Any]:
    """Sub-part ``interpretgan/<name>``: clean vs PGD images through the InterpretGAN."""
    cfg: Zheng2020Config = run.config
    model = run.state["classifiers"][name]
    x, y = _diagnosed(run)
    seed = int(name.rsplit("seed", 1)[1])
    x_adv = PGD(eps=cfg.diag_eps, steps=cfg.pgd_steps, seed=seed)(model, x, y)
    numbers, pictures = interpretgan_views(
        gan, model, x, y, x_adv, n_images=cfg.n_gan_images, batch_size=cfg.eval_batch
    )
    return {"numbers": numbers, "pictures": pictures}


def _interpretgans(run: StudyRun) -> dict[str, Any]:
    """Train (or reload from ``OUT/interpretgan``) an InterpretGAN for the first seed's model
    of each variant, at the diagnosed layers, and show clean vs PGD images through it.

    Returns ``{model: {"layers": {layer: numbers}, "history_last": losses, "seconds"}}``;
    the trained InterpretGANs go into ``run.state["interpretgans"]`` and their pictures
    (see :func:`interpretgan_views`) into ``run.state["gan_pictures"]``.
    """
    cfg: Zheng2020Config = run.config
    seed = cfg.seeds[0]
    numbers: dict[str, Any] = {}
    gans: dict[str, InterpretGAN] = {}
    pictures: dict[str, Any] = {}
    for pool in POOLINGS:
        name = f"{pool}-seed{seed}"
        model = run.state["classifiers"][name]
        run.log(f"InterpretGAN for {name} ({cfg.gan_steps} steps per layer)")
        t0 = time.perf_counter()
        gan, history = train_interpretgan(
            model,
            run.state["train"],
            None if cfg.layers is None else list(cfg.layers),
            InterpretGANConfig(
                steps=cfg.gan_steps,
                batch_size=cfg.gan_batch,
                seed=seed,
                checkpoint_every=max(50, cfg.gan_steps // 10),
            ),
            device=run.device,
            checkpoint=None if run.out is None else run.out / "interpretgan" / f"{name}.pt",
            progress=run.progress,
            meta={"experiment": "zheng2020", "model": name},
        )
        views = run.cached(
            f"interpretgan/{name}",
            lambda name=name, gan=gan: _gan_views(run, name, gan),  # type: ignore[misc]
            reads=("diag_eps", "pgd_steps", "n_diag", "n_gan_images", "eval_batch"),
            uses={"model": model, "test": run.state["test"]}
            | {f"generator {layer}": g for layer, g in gan.generators.items()},
            store="torch",
            code=_gan_views,
        )
        gans[name], pictures[name] = gan, views["pictures"]
        numbers[name] = {
            "layers": views["numbers"],
            "history_last": history[-1] if history else None,
            "seconds": gan.meta.get("seconds", round(time.perf_counter() - t0, 2)),
        }
    run.state["interpretgans"], run.state["gan_pictures"] = gans, pictures
    return numbers


def diagnosis(run: StudyRun) -> dict[str, Any]:
    """Part ``diagnosis``: every model's per-layer diagnosis, its summary over seeds and the
    InterpretGANs (none when ``gan_steps`` is 0)."""
    cfg: Zheng2020Config = run.config
    x, _ = _diagnosed(run)
    run.log(f"per-layer diagnosis (PGD ε={cfg.diag_eps:.4g} on {x.shape[0]} test images)")
    per_model = _diagnose_all(run)
    run.state["gan_pictures"] = {}
    return {
        "models": per_model,
        "summary": summarize_diagnosis(per_model, cfg.seeds),
        "interpretgan": _interpretgans(run) if cfg.gan_steps > 0 else {},
    }
