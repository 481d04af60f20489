"""The parts of an audit: clean accuracy, the attacks and their worst case, transfer from a
surrogate, the soundness evidence, explanation maps under attack and the per-layer diagnosis.

Each part reads the caller's model and data from ``run.state`` ("model", "data" = (x, y)) and
is cached under ``out/parts`` by :func:`part`, keyed on the config, the model's weights and the
data, so a killed audit continues where it stopped and a replaced model is audited anew.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from typing import Any

import torch
from torch import nn

from underfire.attacks import ATTACKS, AttackWarning
from underfire.attacks.base import Attack
from underfire.attacks.cascade import attack_open, cost
from underfire.core import distributed
from underfire.core.state import model_state
from underfire.studies.audit.config import MINIMAL, AuditConfig
from underfire.studies.audit.context import (
    batches,
    data_of,
    eps_of,
    gathered,
    model_of,
    part,
    predict,
    warned,
)
from underfire.studies.base import StudyRun

__all__ = ["run_attacks", "run_clean", "run_gradients", "run_transfer", "run_unbounded"]


def _build_attack(name: str, config: AuditConfig, eps: float) -> Attack:
    kwargs: dict[str, Any] = {}
    if name in ("pgd", "bim"):
        kwargs = {"eps": eps, "steps": config.pgd_steps}
        if name == "pgd":
            kwargs["seed"] = config.seed
    elif name == "cw":
        # CW's paper runs 10^4 Adam steps at lr 0.01; with ~10^2 steps that lr cannot move
        # saturated pixels (tanh space), and CW flipped 8% of MNIST images (const 0.1 to 10
        # alike). lr 0.05, const 1, 5 × 100 steps flipped 100% of 50 images, median L2 1.17,
        # 1 s/image on the 2-core machine (lr 0.1 × 50 steps: 100%, but L2 1.58; docs/audit.md).
        # Warm-started search steps: 36% fewer image-steps, median L2 2% lower (docs/audit.md).
        kwargs = {
            "steps": config.cw_steps,
            "binary_search_steps": 5,
            "const": 1.0,
            "lr": 0.05,
            "warm_start": True,
        }
    elif name == "ddn":  # Rony et al.'s settings; one optimization, no binary search
        kwargs = {"steps": config.ddn_steps}
    elif name == "autoattack":  # the standard version at the paper's budget, seeded
        kwargs = {"eps": eps, "seed": config.seed}
    elif name not in MINIMAL and "eps" in _init_args(name):
        kwargs = {"eps": eps}
    return ATTACKS.create(name, **kwargs)


def _attack_settings(config: AuditConfig, eps: list[float], name: str | None = None) -> dict:
    """The attacks a part's result depends on, as they are built (every setting, defaults
    included), for its cache key: a minimal attack itself; a bounded one itself and the
    cheaper ones before it (the open mode runs it on what they left robust); with no
    ``name`` (the transfer part) every bounded attack it transfers."""
    bounded = open_order(config)
    if name is None:  # AutoAttack is not transferred
        names = [a for a in bounded if a != "autoattack"]
    elif name in MINIMAL:
        names = [name]
    else:
        names = bounded[: bounded.index(name) + 1]
    return {"attacks": {a: _build_attack(a, config, max(eps)).config() for a in names}}


def _init_args(name: str) -> set[str]:
    import inspect

    return set(inspect.signature(ATTACKS.get(name)).parameters)


def _clean(run: StudyRun) -> dict[str, Any]:
    model, (x, y) = model_of(run), data_of(run)
    correct = gathered(
        run,
        [
            predict(model, x[a:b].to(run.device)).cpu() == y[a:b]
            for a, b in batches(run, "clean", shared=True)
        ],
    )
    return {
        "accuracy": correct.double().mean().item(),
        "correct": correct.tolist(),
        "n": len(correct),
    }


def _bounded_attack(run: StudyRun, name: str, source: nn.Module) -> dict[str, Any]:
    """Per-sample correctness of ``model`` on examples crafted on ``source`` at each ε."""
    model, (x, y), eps = model_of(run), data_of(run), eps_of(run)
    attack = _build_attack(name, run.config, max(eps))
    correct: dict[float, list[torch.Tensor]] = {e: [] for e in eps}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AttackWarning)
        for a, b in batches(run, f"{name} ε-sweep", shared=True):
            xb, yb = x[a:b].to(run.device), y[a:b].to(run.device)
            for e, x_adv in zip(eps, attack.sweep(source, xb, yb, eps), strict=True):
                correct[e].append((predict(model, x_adv) == yb).cpu())
    per_eps = {e: gathered(run, c) for e, c in correct.items()}
    return {
        "eps": eps,
        "accuracy": [per_eps[e].double().mean().item() for e in eps],
        "correct": [per_eps[e].tolist() for e in eps],
        "warnings": warned(caught),
    }


def _bounded_on_model(run: StudyRun, name: str) -> dict[str, Any]:
    """White-box: examples crafted on the audited model itself."""
    if run.config.exhaustive:
        return _bounded_attack(run, name, model_of(run))
    return _bounded_open(run, name)


def open_order(config: AuditConfig) -> list[str]:
    """The bounded attacks cheapest first: the order the open (non-exhaustive) audit runs."""
    bounded = [a for a in config.attacks if a not in MINIMAL]
    return sorted(bounded, key=lambda a: cost(_build_attack(a, config, 0.1)))


def _bounded_open(run: StudyRun, name: str) -> dict[str, Any]:
    """White-box, only on what is still open: the samples that the clean model gets right
    and that the bounded attacks before this one (:func:`open_order`) left robust at each ε,
    ε ascending, fooled samples leaving the batch. ``correct`` and ``accuracy`` are
    cumulative: robust to this attack and to those before it."""
    eps = eps_of(run)
    order = open_order(run.config)
    # the attacks before this one that ran (one skipped for the time budget is not counted)
    before = [a for a in order[: order.index(name)] if f"attack-{a}" in run.results]
    if before:
        prior = torch.tensor(run.results[f"attack-{before[-1]}"]["correct"])
    else:
        prior = torch.tensor(run.results["clean"]["correct"])[None].expand(len(eps), -1)
    _, result = _open_on(run, name, prior, f"{name} ε-sweep (open samples)")
    return result | {"cumulative": before}


def _open_on(
    run: StudyRun, name: str, prior: torch.Tensor, what: str, source: nn.Module | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``name`` on the samples ``prior`` (len(eps), N) leaves robust, over every batch
    (:func:`~underfire.attacks.cascade.attack_open`; ``source``: crafted on that model):
    the robust rows after it, and its part's result without what the caller adds."""
    model, (x, y), eps = model_of(run), data_of(run), eps_of(run)
    attack = _build_attack(name, run.config, max(eps))
    rows: list[torch.Tensor] = []
    attacked = torch.zeros(len(eps), dtype=torch.long)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AttackWarning)
        for a, b in batches(run, what, shared=True):
            xb, yb = x[a:b].to(run.device), y[a:b].to(run.device)
            res = attack_open(
                attack, model, xb, yb, eps, prior[:, a:b].to(run.device), source=source
            )
            rows.append(res.robust.cpu())
            attacked += torch.tensor(res.attacked)
    robust = gathered(run, rows, dim=1)
    return robust, {
        "eps": eps,
        "accuracy": robust.double().mean(1).tolist(),
        "correct": robust.tolist(),
        "attacked": distributed.all_sum(attacked).tolist(),
        "warnings": warned(caught),
    }


def _minimal_attack(run: StudyRun, name: str) -> dict[str, Any]:
    """Success and perturbation norms of a minimal-perturbation attack (DDN, CW, JSMA)."""
    model, (x, y), eps = model_of(run), data_of(run), eps_of(run)
    attack = _build_attack(name, run.config, 0.0)
    clean = torch.tensor(run.results["clean"]["correct"])
    success, l0, l2, linf = [], [], [], []
    # small batches: these attacks are slow, and the progress bar's ETA needs steps
    for a, b in batches(run, name, size=min(32, run.config.batch_size), shared=True):
        xb, yb = x[a:b].to(run.device), y[a:b].to(run.device)
        if run.config.exhaustive:
            x_adv = attack(model, xb, yb)
        else:  # a misclassified image needs no attack: it stays as it is (success, norm 0)
            idx = clean[a:b].nonzero()[:, 0].to(run.device)
            x_adv = xb.clone()
            if idx.numel():
                x_adv[idx] = attack(model, xb[idx], yb[idx])
        delta = (x_adv - xb).flatten(1).cpu()
        success.append((predict(model, x_adv) != yb).cpu())
        l0.append((delta.abs() > 1e-6).sum(1).float())
        l2.append(delta.norm(dim=1))
        linf.append(delta.abs().amax(1))
    ok = gathered(run, success)
    norms = {"l0": gathered(run, l0), "l2": gathered(run, l2), "linf": gathered(run, linf)}
    # an image the model already gets wrong "succeeds" with no perturbation: success and the
    # medians are over the correctly classified images only
    flipped = ok & clean

    def median(v: torch.Tensor) -> float | None:
        return v[flipped].median().item() if bool(flipped.any()) else None

    return {
        "success_rate": flipped.double().sum().item() / max(int(clean.sum()), 1),
        "n_right": int(clean.sum()),
        "success": ok.tolist(),
        "median": {k: median(v) for k, v in norms.items()},
        "linf": norms["linf"].tolist(),
        # robust at ε unless the attack succeeded within the ε-ball
        "correct": [
            [
                not (s and d <= e + 1e-7)
                for s, d in zip(ok.tolist(), norms["linf"].tolist(), strict=True)
            ]
            for e in eps
        ],
    }


def _white_box_robust(run: StudyRun) -> torch.Tensor:
    """(len(eps), N) bool: correct on the clean input and left robust by every white-box
    attack that ran (a part skipped for the time budget is not counted)."""
    robust = torch.tensor(run.results["clean"]["correct"])[None].repeat(len(eps_of(run)), 1)
    for a in run.config.attacks:
        if f"attack-{a}" in run.results:
            robust &= torch.tensor(run.results[f"attack-{a}"]["correct"])
    return robust


def _worst_case(run: StudyRun) -> dict[str, Any]:
    """Per sample, the worst case over every attack that ran: the white-box ones and, once
    the transfer part ran, the transferred ones (each crafted example lies in the ε-ball, so
    whichever attack found it, the sample is broken)."""
    robust = _white_box_robust(run)
    names = [a for a in run.config.attacks if f"attack-{a}" in run.results]
    for a, result in run.results.get("transfer", {}).get("attacks", {}).items():
        robust &= torch.tensor(result["correct"])
        names.append(f"{a} (transferred)")
    return {
        "eps": eps_of(run),
        "accuracy": robust.double().mean(1).tolist(),
        "attacks": names,
        "mode": "exhaustive" if run.config.exhaustive else "open",
    }


def _train_surrogate(run: StudyRun, train: torch.Tensor) -> nn.Module:
    """A Ross CNN (any square input) trained on the audited model's own labels of the
    images ``x[train]``."""
    from underfire.data import DatasetInfo, ImageDataset
    from underfire.models import create_model
    from underfire.train import TrainConfig, Trainer

    model, (x, _) = model_of(run), data_of(run)
    c, h, w = x.shape[1:]
    if h != w:
        raise ValueError("the surrogate needs square images")
    k = int(model(x[:1].to(run.device)).shape[1])
    # seeded before it is built: its initial weights must not depend on how much randomness
    # earlier parts drew (a resumed audit reuses them and would train another surrogate)
    torch.manual_seed(run.config.seed)
    surrogate = create_model("ross-cnn", in_channels=c, input_size=h, num_classes=k, hidden=256)
    labels = torch.cat(
        [predict(model, x[a:b].to(run.device)).cpu() for a, b in batches(run, "labels")]
    )
    trainer = Trainer(
        surrogate,
        config=TrainConfig(epochs=run.config.surrogate_epochs, batch_size=64, seed=run.config.seed),
        device=run.device,
        progress=run.progress,
    )
    info = DatasetInfo(
        name="audit-surrogate",
        shape=(c, h, w),
        num_classes=k,
        classes=tuple(str(i) for i in range(k)),
        description="the audited images with the audited model's labels",
    )
    trainer.fit(ImageDataset(x[train], labels[train], info, "train"))
    return surrogate.eval()


def _unbounded(run: StudyRun) -> dict[str, Any]:
    model, (x, y) = model_of(run), data_of(run)
    n = min(x.shape[0], 100)
    # only the accuracy under attack counts: a sample fooled at an iterate keeps it and
    # leaves the batch (the answer is the same or lower, the work shorter)
    attack = ATTACKS.create(
        "pgd",
        eps=1.0,
        steps=run.config.pgd_steps,
        step_size=0.1,
        seed=run.config.seed,
        early_stop=True,
    )
    correct = []
    for a, b in batches(run, "unbounded PGD", n, shared=True):
        xb, yb = x[a:b].to(run.device), y[a:b].to(run.device)
        correct.append((predict(model, attack(model, xb, yb)) == yb).cpu())
    c = gathered(run, correct)
    return {"accuracy": c.double().mean().item(), "n": len(c)}


def _gradients(run: StudyRun) -> dict[str, Any]:
    model, (x, y) = model_of(run), data_of(run)
    zero = nonfinite = 0
    with model_state(model):
        for a, b in batches(run, "gradients", shared=True):
            xb = x[a:b].to(run.device).requires_grad_(True)
            loss = nn.functional.cross_entropy(model(xb), y[a:b].to(run.device), reduction="sum")
            (g,) = torch.autograd.grad(loss, xb)
            flat = g.flatten(1)
            finite = torch.isfinite(flat).all(1)
            nonfinite += int((~finite).sum())
            zero += int(((flat.abs().amax(1) == 0) & finite).sum())
    zero, nonfinite = distributed.all_sum(torch.tensor([zero, nonfinite])).tolist()
    return {"zero": zero, "nonfinite": nonfinite, "n": x.shape[0]}


def _transfer(run: StudyRun) -> dict[str, Any]:
    """The bounded attacks crafted on a surrogate and evaluated on the model. The surrogate
    learns the model's labels of 80% of the audited images; its agreement with the model is
    measured on the 20% it did not see (on its training images when fewer than 10 are
    audited), since agreement on training images says little."""
    model, (x, _) = model_of(run), data_of(run)
    n = x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(run.config.seed))
    held = n // 5 if n >= 10 else 0
    train, test = (order[held:], order[:held]) if held else (order, order)
    surrogate = _train_surrogate(run, train)
    xs = x[test].to(run.device)
    agreement = (predict(surrogate, xs) == predict(model, xs)).cpu()
    if run.config.exhaustive:
        attacks = {a: _bounded_attack(run, a, surrogate) for a in _transferred(run.config)}
    else:
        attacks = _transfer_open(run, surrogate)
    return {
        "surrogate": "ross-cnn (hidden 256) on the model's labels",
        "agreement": agreement.double().mean().item(),
        "agreement_on": f"{held} held-out images" if held else f"its {n} training images",
        "trained_on": len(train),
        "attacks": attacks,
    }


def _transferred(config: AuditConfig) -> list[str]:
    """The bounded attacks transferred, in the config's order (AutoAttack is a white-box
    evaluation: transferring it would cost its full run again)."""
    return [a for a in config.attacks if a not in MINIMAL and a != "autoattack"]


def _transfer_open(run: StudyRun, surrogate: nn.Module) -> dict[str, dict[str, Any]]:
    """The transferred attacks, cheapest first, each only on the samples still robust: those
    that every white-box attack and the transfers before it left robust at each ε, ε
    ascending. What they break is what the white-box attacks missed (the sign of gradient
    masking, in ``broke``); each ``correct`` row is cumulative, so the last one is the worst
    case over everything the audit ran."""
    prior = _white_box_robust(run)
    names = [a for a in open_order(run.config) if a in _transferred(run.config)]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        what = f"{name} transferred (open samples)"
        robust, result = _open_on(run, name, prior, what, source=surrogate)
        out[name] = result | {
            "cumulative": ["white-box", *out],
            "broke": (prior & ~robust).sum(1).tolist(),
        }
        prior = robust
    return out


# ------------------------------------------------------------------------------ the parts


def run_clean(run: StudyRun) -> None:
    part(run, "clean", _clean, always=True)


def run_attacks(run: StudyRun) -> None:
    """Each attack of the config (white-box), then the per-sample worst case over them."""
    names = list(run.config.attacks)
    if not run.config.exhaustive:  # bounded cheapest first, each on what the others left
        names = open_order(run.config) + [a for a in names if a in MINIMAL]
    for name in names:
        compute = _minimal_attack if name in MINIMAL else _bounded_on_model
        settings = _attack_settings(run.config, eps_of(run), name)
        part(run, f"attack-{name}", functools.partial(compute, name=name), settings=settings)
    run.results["worst_case"] = _worst_case(run)


def run_transfer(run: StudyRun) -> None:
    if not run.config.surrogate:
        return
    settings = _attack_settings(run.config, eps_of(run))
    if not run.config.exhaustive:  # it attacks what the white-box parts left: keyed on that
        left = _white_box_robust(run).numpy().tobytes()
        settings["open_on"] = hashlib.sha256(left).hexdigest()
    if part(run, "transfer", _transfer, settings=settings) is not None:
        run.results["worst_case"] = _worst_case(run)


def run_unbounded(run: StudyRun) -> None:
    part(run, "unbounded", _unbounded)


def run_gradients(run: StudyRun) -> None:
    part(run, "gradients", _gradients)
