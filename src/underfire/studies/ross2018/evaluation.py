"""Evaluations of the Ross & Doshi-Velez (AAAI 2018) reproduction: pure torch, no plotting.

Each function takes trained models and test tensors and returns plain numbers/tensors that
the study's parts store in ``results.json`` and plot.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks import BIM, FGSM, JSMA, TGSM, GradientMaskingWarning, SubstituteAttack
from underfire.core import distributed
from underfire.core.state import model_state

__all__ = [
    "blackbox_accuracy",
    "chunks",
    "first_of_classes",
    "gini",
    "gradient_statistics",
    "input_gradients",
    "jsma_grid",
    "judge_agreement",
    "quantiles",
    "summed",
    "transfer_accuracy",
]


def chunks(n: int, size: int) -> list[slice]:
    """Slices of ``range(n)`` of at most ``size`` items."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def summed(counts: Any) -> Any:
    """Integer counts nested in dicts and lists, summed over the ``torchrun`` ranks (each
    counted its :func:`~underfire.core.distributed.my_batches`); unchanged in one process."""
    if not distributed.active():
        return counts

    def leaves(node: Any) -> Iterator[int]:
        for v in node.values() if isinstance(node, dict) else node:
            yield from leaves(v) if isinstance(v, (dict, list)) else [v]

    total = iter(distributed.all_sum(torch.tensor(list(leaves(counts)))).tolist())

    def rebuild(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: rebuild(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rebuild(v) for v in node]
        return next(total)

    return rebuild(counts)


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient per row of a non-negative (N, D) tensor (0 = uniform, → 1 = sparse)."""
    v, _ = values.flatten(1).abs().sort(dim=1)
    d = v.shape[1]
    i = torch.arange(1, d + 1, dtype=v.dtype, device=v.device)
    total = v.sum(1).clamp_min(1e-30)
    return ((2 * i - d - 1) * v).sum(1) / (d * total)


def quantiles(values: list[float]) -> dict[str, float]:
    """10th, 50th and 90th percentiles and the mean of ``values``."""
    t = torch.tensor(values, dtype=torch.float64)
    q = torch.quantile(t, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    return {"q10": q[0], "median": q[1], "q90": q[2], "mean": float(t.mean())}


def first_of_classes(
    x: torch.Tensor, y: torch.Tensor, classes: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first image of each of ``classes`` present in ``(x, y)``."""
    idx = [int((y == c).nonzero()[0]) for c in classes if bool((y == c).any())]
    return x[idx], y[idx]


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int((model(x).argmax(1) == y).sum())


def transfer_accuracy(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    *,
    targeted: bool = False,
    iterations: int = 1,
    batch_size: int = 500,
    sources: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The model × model accuracy matrix of FGSM (or TGSM, t = (y+1) mod K) examples, per ε.

    Examples are crafted white-box against each *source* and classified by every *victim*;
    the diagonal is the white-box accuracy (Ross & Doshi-Velez 2018, Figs. 1 and 3). One
    gradient per source and batch serves every ε (sign(∇) does not depend on ε).

    With ``iterations > 1`` (targeted only) the attack is the paper's *iterated* TGSM: BIM
    toward t with ``iterations`` steps of ε/iterations, crafted separately for every ε.
    ``sources`` restricts the rows to these models (default: every model).

    Returns:
        ``{"accuracy": {source: {victim: [acc per ε]}}, "unchanged": {source: [fraction of
        x_adv == x per ε]}, "masked_warnings": {source: count}}``; targeted attacks add
        ``"target_rate": {source: {victim: [fraction classified as t per ε]}}``.
    """
    if iterations < 1 or (iterations > 1 and not targeted):
        raise ValueError(
            f"iterations must be ≥ 1, and > 1 only for the targeted attack; got {iterations} (targeted={targeted})"
        )
    attack = TGSM(eps=max(eps)) if targeted else FGSM(eps=max(eps))

    def craft(src: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> list[torch.Tensor]:
        if iterations == 1:
            return list(attack.sweep(src, xb, yb, list(eps)))
        return [
            BIM(eps=e, steps=iterations)(src, xb, yb, target="next") if e > 0 else xb.clone()
            for e in eps
        ]

    rows = list(models) if sources is None else list(sources)
    unknown = [s for s in rows if s not in models]
    if unknown:
        raise ValueError(f"sources {unknown} are not among the models {list(models)}")
    n = x.shape[0]
    correct = {s: {v: [0] * len(eps) for v in models} for s in rows}
    hits = {s: {v: [0] * len(eps) for v in models} for s in rows}
    unchanged = {s: [0] * len(eps) for s in rows}
    masked = {s: 0 for s in rows}
    for src_name in rows:
        src = models[src_name]
        for sl in distributed.my_batches(n, batch_size):
            xb, yb = x[sl], y[sl]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", GradientMaskingWarning)
                advs = craft(src, xb, yb)
            masked[src_name] += sum(issubclass(w.category, GradientMaskingWarning) for w in caught)
            for i, xa in enumerate(advs):
                unchanged[src_name][i] += int(((xa - xb).flatten(1).abs().amax(1) == 0).sum())
                for v_name, victim in models.items():
                    with torch.no_grad():
                        logits = victim(xa)
                    pred = logits.argmax(1)
                    correct[src_name][v_name][i] += int((pred == yb).sum())
                    if targeted:  # the attacks' "next" rule: t = (y + 1) mod K
                        hits[src_name][v_name][i] += int((pred == (yb + 1) % logits.shape[1]).sum())
    correct, hits, unchanged, masked = summed([correct, hits, unchanged, masked])

    def fractions(counts: dict[str, dict[str, list[int]]]) -> dict[str, dict[str, list[float]]]:
        return {s: {v: [c / n for c in row] for v, row in vs.items()} for s, vs in counts.items()}

    result: dict[str, Any] = {
        "accuracy": fractions(correct),
        "unchanged": {s: [c / n for c in row] for s, row in unchanged.items()},
        "masked_warnings": masked,
    }
    if targeted:
        result["target_rate"] = fractions(hits)
    return result


def input_gradients(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor | None, *, uniform: bool = False
) -> torch.Tensor:
    """∂CE(f(x), labels)/∂x per example (N, C, H, W), model in eval mode; ``uniform`` uses the
    uniform label distribution (the certainty-insensitive loss). The model is borrowed: its
    submodules' modes, ``requires_grad`` and ``.grad`` come back as they were."""
    if labels is None and not uniform:
        raise ValueError("input_gradients needs labels unless uniform=True")
    # every submodule's mode, requires_grad and .grad come back as they were
    with model_state(model, mode="eval", freeze=True):
        xx = x.detach().clone().requires_grad_(True)
        logits = model(xx)
        loss = (
            -F.log_softmax(logits, 1).mean(1).sum()
            if uniform or labels is None
            else F.cross_entropy(logits, labels, reduction="sum")
        )
        (g,) = torch.autograd.grad(loss, xx)
    return g


def gradient_statistics(
    models: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500
) -> dict[str, dict[str, list[float]]]:
    """Per model: L2 norms of the input gradients of the FGSM loss (CE at y) and TGSM loss
    (CE at t = (y+1) mod K), and the predicted log-probabilities (paper Fig. 4).

    Returns:
        ``{model: {"fgsm_norm": [...N], "tgsm_norm": [...N], "log_prob_predicted": [...N],
        "log_prob_other": [...N·(K−1)]}}`` (log-probabilities in nats).
    """
    out: dict[str, dict[str, list[float]]] = {}
    for name, model in models.items():
        fg, tg, lp_pred, lp_other = [], [], [], []
        for sl in chunks(x.shape[0], batch_size):
            xb, yb = x[sl], y[sl]
            with torch.no_grad():
                logits = model(xb)
            k = logits.shape[1]
            fg.append(input_gradients(model, xb, yb).flatten(1).norm(dim=1))
            tg.append(input_gradients(model, xb, (yb + 1) % k).flatten(1).norm(dim=1))
            logp = F.log_softmax(logits.double(), 1)
            pred = logp.argmax(1)
            lp_pred.append(logp.gather(1, pred[:, None]).squeeze(1))
            mask = torch.ones_like(logp, dtype=torch.bool)
            mask[torch.arange(len(pred)), pred] = False
            lp_other.append(logp[mask])
        out[name] = {
            "fgsm_norm": torch.cat(fg).tolist(),
            "tgsm_norm": torch.cat(tg).tolist(),
            "log_prob_predicted": torch.cat(lp_pred).tolist(),
            "log_prob_other": torch.cat(lp_other).tolist(),
        }
    return out


def blackbox_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    *,
    seed_size: int,
    rounds: int,
    epochs: int,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, Any]:
    """White-box FGSM and black-box substitute-FGSM accuracy of ``model``, per ε (paper Fig. 2).

    The substitute (Papernot et al. 2017) sees only the victim's labels on its Jacobian-
    augmented set, grown from the first ``seed_size`` test images; the examples are FGSM
    against the substitute, transferred to the victim.
    """
    n = x.shape[0]
    sub = SubstituteAttack(
        attack=FGSM(eps=max(eps)), n_seed=seed_size, rounds=rounds, epochs=epochs, seed=seed
    )
    sub.fit(model, x[:seed_size])
    substitute = sub.substitute_
    assert substitute is not None  # set by fit
    fgsm = FGSM(eps=max(eps))
    white = [0] * len(eps)
    black = [0] * len(eps)
    for sl in distributed.my_batches(n, batch_size):
        xb, yb = x[sl], y[sl]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GradientMaskingWarning)
            for i, xa in enumerate(fgsm.sweep(model, xb, yb, list(eps))):
                white[i] += _correct(model, xa, yb)
            for i, xa in enumerate(fgsm.sweep(substitute, xb, yb, list(eps))):
                black[i] += _correct(model, xa, yb)
    white, black = summed([white, black])
    return {
        "white_box": [c / n for c in white],
        "black_box": [c / n for c in black],
        "substitute_agreement": float(sub.agreement),
        "substitute_queries": int(sub.queries),
    }


def jsma_grid(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    theta: float,
    gamma: float,
    on: str = "logits",
) -> dict[str, Any]:
    """JSMA (Papernot et al. 2016) from each image in ``x`` to every class (paper Fig. 5);
    ``on`` picks the differentiated output (logits as in the paper's code, or probabilities).

    Returns:
        ``{"images": (len(x), K, C, H, W), "predicted": (len(x), K), "success": (len(x), K)
        bool, "l0": (len(x), K) changed features}``; the entry of the true class is the clean
        image.
    """
    if on not in ("logits", "probabilities"):
        raise ValueError(f"on must be 'logits' or 'probabilities', got {on!r}")
    attack = JSMA(theta=theta, gamma=gamma, on="logits" if on == "logits" else "probabilities")
    n, k = x.shape[0], num_classes
    xs = x.repeat_interleave(k, dim=0)
    ys = y.repeat_interleave(k)
    targets = torch.arange(k, device=x.device).repeat(n)
    adv = xs.clone()
    todo = targets != ys
    adv[todo] = attack(model, xs[todo], ys[todo], target=targets[todo])
    with torch.no_grad():
        pred = model(adv).argmax(1)
    changed = (adv != xs).flatten(1).sum(1)
    return {
        "images": adv.view(n, k, *x.shape[1:]),
        "predicted": pred.view(n, k),
        "success": (pred == targets).view(n, k),
        "l0": changed.view(n, k),
        "targets": targets.view(n, k),
        "todo": todo.view(n, k),
    }


def judge_agreement(grid: dict[str, Any], judges: dict[str, nn.Module]) -> dict[str, Any]:
    """Claim 5's proxy for "looks like the target to people": the fraction of successful JSMA
    examples of ``grid`` that each independent judge classifies as the target, and their mean.

    The judges are models the attacker never saw (other architectures, other seeds), so an
    example they read as the target has moved toward the target class itself rather than into a
    blind spot of the attacked model. The paper asks people; this is the closest automatic proxy.
    """
    ok = grid["todo"] & grid["success"]
    per_judge: dict[str, float] = {}
    for name, judge in judges.items():
        with torch.no_grad():
            judged = judge(grid["images"].flatten(0, 1)).argmax(1).view_as(ok)
        per_judge[name] = (
            float((judged == grid["targets"])[ok].float().mean()) if bool(ok.any()) else 0.0
        )
    mean = sum(per_judge.values()) / len(per_judge) if per_judge else 0.0
    return {"judge_agreement": mean, "judge_agreement_per_judge": per_judge}
