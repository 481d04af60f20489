"""Robustness and transferability of classifiers under attack.

* :func:`robust_accuracy` — accuracy under an attack (or the per-sample worst case over
  several) for a sweep of ε. By default untargeted attacks run only on what is still open
  (:mod:`underfire.attacks.cascade`: fooled samples leave the batch, ε ascending, cheap
  attacks first); ``exhaustive=True`` runs every attack on every sample at every ε.
* :func:`transfer_matrix` — accuracy of every victim on examples crafted against every
  source (Ross & Doshi-Velez 2018, transfer experiments; Papernot et al. 2016, transferability).

Both run soundness checks that warn (:class:`underfire.attacks.SoundnessWarning`) with the
symptom, following Carlini et al. (2019), "On Evaluating Adversarial Robustness":
accuracy that rises with ε, and an iterative L∞ attack weaker than single-step FGSM.
Attacks themselves warn (:class:`underfire.attacks.GradientMaskingWarning`) on zero, NaN
or underflowing input gradients.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from underfire.attacks.base import Attack, SoundnessWarning, resolve_target
from underfire.attacks.cascade import Tally, by_cost, kept_in, open_batch, openable
from underfire.attacks.fgsm import FGSM
from underfire.core import distributed
from underfire.core.forward import checked_forward
from underfire.core.state import model_state
from underfire.core.threads import forward_macs, job_threads
from underfire.core.validation import (
    check_eps,
    check_int,
    check_labels,
    check_same_device,
)
from underfire.data.collect import collect_data

__all__ = ["collect_data", "robust_accuracy", "transfer_matrix"]

Data = Any  # a Dataset, a DataLoader, an ImageDataset (``.x``, ``.y``) or an (x, y) pair


def _tensors(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = collect_data(data)
    check_labels(y, x.shape[0], "data y")
    if x.shape[0] == 0:
        raise ValueError("cannot evaluate on empty data: an accuracy needs at least one sample")
    return x, y


def _check_model(model: object, what: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_attack(attack: object) -> Attack:
    if not isinstance(attack, Attack):
        raise TypeError(f"attack must be an underfire Attack, got {type(attack).__name__}")
    return attack


def _check_attacks(attack: object) -> list[Attack]:
    """One attack, or several of one norm, all with an ε (their worst case is per ε)."""
    if isinstance(attack, Attack):
        return [attack]
    if isinstance(attack, type) and issubclass(attack, Attack):  # the class, not an attack
        raise TypeError(
            f"attack must be an underfire Attack, got the class {attack.__name__}; "
            f"create one, e.g. {attack.__name__}(eps=...)"
        )
    if isinstance(attack, (str, bytes)) or not isinstance(attack, Sequence) or not attack:
        raise TypeError(
            f"attack must be an underfire Attack or a non-empty list of them, got {type(attack).__name__}"
        )
    attacks = [_check_attack(a) for a in attack]
    if len(attacks) > 1:
        if any(a.eps is None for a in attacks):
            raise ValueError(
                "several attacks are combined per ε: each needs an ε (evaluate CW or JSMA alone)"
            )
        if len({a.norm for a in attacks}) > 1:
            raise ValueError(
                f"several attacks must share one norm, got {sorted({str(a.norm) for a in attacks})}"
            )
    return attacks


def _check_target(target: object, n: int) -> torch.Tensor | str | None:
    if isinstance(target, torch.Tensor):
        check_labels(target, n, "target")
    elif target is not None and not isinstance(target, str):
        raise TypeError(
            f"target must be None, a rule name or a tensor of N classes, got {type(target).__name__}"
        )
    return target


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with model_state(model), checked_forward(model, who="robustness evaluation"):
        return model(x.to(_device(model))).argmax(1).to(x.device)


def _eps_list(attack: Attack, eps: Sequence[float] | float | None) -> list[float | None]:
    if eps is None:
        return [attack.eps]
    if attack.eps is None:
        raise ValueError(
            f"{type(attack).__name__} has no ε (it is not an Lp-ball attack); call without eps"
        )
    if isinstance(eps, str) or not isinstance(eps, (int, float, Sequence, torch.Tensor)):
        raise TypeError(f"eps must be a number or a sequence of numbers, got {type(eps).__name__}")
    raw = [eps] if isinstance(eps, (int, float)) else list(eps)
    if not raw:
        raise ValueError("eps must list at least one value")
    norm = attack.norm or "linf"
    return [check_eps(e, norm, f"eps[{i}]") for i, e in enumerate(raw)]


def _sweep(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: list[float | None],
    target: Any,
) -> Iterator[torch.Tensor]:
    values = [e for e in eps if e is not None]
    if len(values) != len(eps) or eps == [attack.eps]:  # no ε to sweep, or just the attack's own
        yield attack(model, x, y, target)
    else:
        yield from attack.sweep(model, x, y, values, target)


def _check_monotone(eps: list[float | None], acc: list[float], n: int, what: str) -> None:
    tol = max(0.01, 1.0 / n)
    pairs = sorted((e, a) for e, a in zip(eps, acc, strict=False) if e is not None)
    for (e0, a0), (e1, a1) in itertools.pairwise(pairs):
        if a1 > a0 + tol:
            warnings.warn(
                f"{what}: accuracy rises with ε ({a0:.3f} at ε={e0:g} → {a1:.3f} at ε={e1:g}); a larger "
                "ball contains the smaller one, so a working attack cannot do worse — suspect gradient "
                "masking, too few steps or a bad step size",
                SoundnessWarning,
                stacklevel=3,
            )
            return


def robust_accuracy(
    model: nn.Module,
    attack: Attack | Sequence[Attack],
    data: Data,
    eps: Sequence[float] | float | None = None,
    *,
    target: torch.Tensor | str | None = None,
    batch_size: int = 256,
    check: bool = True,
    keep_examples: int = 0,
    exhaustive: bool = False,
    per_sample: bool = False,
) -> dict[str, Any]:
    """Accuracy of ``model`` under ``attack`` for each ε (``None``: the attack's own ε).

    Under ``torchrun`` (an initialized process group) each rank attacks its block of whole
    batches and every rank returns the result of all images, as one process would
    (docs/distributed.md says what is bit-identical).

    Args:
        model: the victim (and white-box target) classifier.
        attack: an :class:`~underfire.attacks.Attack`, or several (one norm, each with an ε):
            then a sample counts as robust at ε only if it survives every one of them.
        data: a Dataset, a DataLoader, an ImageDataset or an (x, y) pair (see
            :func:`collect_data`); moved to the model's device batch by batch.
        eps: radii to sweep (ignored by attacks without ε, e.g. CW or JSMA: pass None).
        target: None, a rule name, or a tensor of N target classes.
        batch_size: batch size of the attack.
        check: run the soundness checks (accuracy monotone in ε; an iterative L∞ attack not
            weaker than FGSM on the first batch) and warn with :class:`SoundnessWarning`. In
            the open mode these run on the first :data:`PROBE` samples, each attack on all
            of them (its curve there is its own, not cumulative).
        keep_examples: keep this many adversarial examples per ε (CPU tensors) in the result.
        exhaustive: run every attack on every sample at every ε (each attack's own curve on
            all samples). The default, for untargeted evaluations, attacks only what is still
            open (:mod:`underfire.attacks.cascade`): fooled samples leave the batch, ε runs
            ascending and a sample broken at ε counts as broken at every larger ε, the
            attacks run cheapest first on what the earlier ones left robust. Its robust
            accuracy is never higher than the exhaustive one (the same or lower, per ε).
            Targeted evaluations, and attacks whose result on a sample depends on the batch
            (:func:`~underfire.attacks.cascade.openable`), always run exhaustively.
        per_sample: add ``per_sample``: ``correct`` and ``success`` ((len(eps), N) bool, the
            worst case per sample) and ``clean`` ((N,) bool).

    Returns:
        dict with ``attack`` (its config; a list for several), ``eps``, ``accuracy`` (per ε;
        the per-sample worst case over the attacks), ``success_rate`` (per ε: misclassified,
        or classified as the target when targeted; with the "random" rule, misclassified),
        ``clean_accuracy``, ``n``, ``mode`` ("open" or "exhaustive"), ``per_attack``
        (name → accuracy per ε: each attack's own curve when exhaustive, the cumulative
        curve of it and the attacks before it when open), ``attacked`` (open: per attack,
        how many samples it ran on at each ε) and ``examples`` ({"x", "y", "x_adv":
        (len(eps), k, C, H, W)}) when asked.
    """
    _check_model(model)
    attacks = _check_attacks(attack)
    x_all, y_all = _tensors(data)
    if eps is None and len({a.eps for a in attacks}) > 1:
        raise ValueError("the attacks have different ε: pass eps= to evaluate them together")
    eps_l = _eps_list(attacks[0], eps)
    batch_size = check_int(batch_size, "batch_size")
    keep_examples = check_int(keep_examples, "keep_examples", minimum=0)
    device = _device(model)
    check_same_device(model, x_all[:0].to(device))  # dtype: float64 data, float32 model
    n = x_all.shape[0]
    target = _check_target(target, n)
    untargeted = target is None and all(a.default_target is None for a in attacks)
    is_open = untargeted and not exhaustive and all(openable(a) for a in attacks)
    if is_open:
        attacks = by_cost(attacks)
    # under torchrun: this rank's whole batches; rank 0 holds the first (its checks)
    block = distributed.shard(n, batch_size=batch_size)
    tally = Tally(len(attacks), len(eps_l), kept_in(keep_examples, block))
    t = target[block] if isinstance(target, torch.Tensor) else target
    said: list[warnings.WarningMessage] | None = [] if distributed.active() else None
    macs = forward_macs(model, x_all[:1].to(device), batch=min(batch_size, n))
    with job_threads(macs if device.type == "cpu" else None):
        mine = (x_all[block], y_all[block], eps_l, t, batch_size)
        _evaluate(model, attacks, *mine, is_open, check and distributed.is_main(), tally, said)
    tally.merge_ranks(n, batch_size, keep_examples, x_all[:0])
    _say_everywhere(said)
    result = _result(model, attacks, x_all, y_all, eps_l, tally, is_open, check)
    if per_sample:
        result["per_sample"] = tally.per_sample()
    return result


def _say_everywhere(said: list[warnings.WarningMessage] | None) -> None:
    """Under ``torchrun``: the warnings of rank 0's first-batch checks, raised on every rank
    (one process raises them; the other ranks never see that batch)."""
    if said is None:
        return
    for category, message in distributed.from_main(
        lambda: [(w.category, str(w.message)) for w in said]
    ):
        warnings.warn(message, category, stacklevel=3)


@contextlib.contextmanager
def _recorded(said: list[warnings.WarningMessage] | None) -> Iterator[None]:
    """The warnings raised inside, kept in ``said`` (raised as usual when None)."""
    if said is None:
        yield
        return
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    said.extend(seen)


def _evaluate(
    model: nn.Module,
    attacks: list[Attack],
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    eps_l: list[float | None],
    target: torch.Tensor | str | None,
    batch_size: int,
    is_open: bool,
    check: bool,
    tally: Tally,
    said: list[warnings.WarningMessage] | None = None,
) -> None:
    device = _device(model)
    first = True
    n = x_all.shape[0]
    for start, (x, y) in zip(
        range(0, n, batch_size), _batches(x_all, y_all, batch_size, device), strict=False
    ):
        t = (
            target[start : start + batch_size].to(device)
            if isinstance(target, torch.Tensor)
            else target
        )
        clean = _predict(model, x) == y
        tally.add_clean(clean)
        if is_open:
            open_batch(model, attacks, x, y, eps_l, clean, tally)
        else:
            _exhaustive_batch(model, attacks, x, y, eps_l, t, tally)
        if check and first:
            with _recorded(said):
                if is_open:
                    _probe(model, attacks, x, y, eps_l)
                elif len(attacks) == 1:
                    first_acc = tally.first_accuracy(x.shape[0])
                    _check_single_step(model, attacks[0], x, y, eps_l, t, first_acc)
        first = False


#: Samples of the first batch that the open mode's soundness checks attack exhaustively.
PROBE = 64


def _probe(
    model: nn.Module, attacks: list[Attack], x: torch.Tensor, y: torch.Tensor, eps: list[Any]
) -> None:
    """The open mode's curves are cumulative, so monotone in ε by construction: the checks
    that need an attack's own curve (accuracy not rising with ε, not weaker than FGSM) run
    on the first :data:`PROBE` samples, every attack on each of them at every ε."""
    xp, yp = x[:PROBE], y[:PROBE]
    for attack in attacks:
        own = [
            float((_predict(model, xa) == yp).double().mean())
            for xa in _sweep(attack, model, xp, yp, eps, None)
        ]
        _check_monotone(
            eps, own, xp.shape[0], f"{type(attack).__name__} (on {xp.shape[0]} probe samples)"
        )
        _check_single_step(model, attack, xp, yp, eps, None, own)


def _exhaustive_batch(
    model: nn.Module,
    attacks: list[Attack],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: list[float | None],
    t: Any,
    tally: Tally,
) -> None:
    """Every attack on every sample at every ε; a sample is robust if it survives them all."""
    robust = torch.ones(len(eps), x.shape[0], dtype=torch.bool, device=y.device)
    success = torch.zeros_like(robust)
    x_adv: list[torch.Tensor] = [x] * len(eps)
    for a, attack in enumerate(attacks):
        t_res = None
        for i, xa in enumerate(_sweep(attack, model, x, y, eps, t)):
            pred = _predict(model, xa)
            right = pred == y
            tally.per_attack[a, i] += int(right.sum())
            if t is None and attack.default_target is None:
                hit = ~right
            else:
                if t_res is None:
                    t_res = _resolved_target(attack, model, x, y, t)
                # random targets were drawn inside the attack: count misclassification instead
                hit = ~right if t_res.numel() == 0 else pred == t_res
            # the example kept: the first attack's that breaks the sample, else the last's
            take = robust[i] if a else torch.ones_like(right)
            x_adv[i] = torch.where(take.view(-1, *[1] * (x.dim() - 1)), xa, x_adv[i])
            robust[i] &= right
            success[i] |= hit
    tally.add(robust, success, x_adv)


def _result(
    model: nn.Module,
    attacks: list[Attack],
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    eps_l: list[float | None],
    tally: Tally,
    is_open: bool,
    check: bool,
) -> dict[str, Any]:
    n = x_all.shape[0]
    acc = (tally.correct.double() / n).tolist()
    names = [f"{a.name or type(a).__name__}" for a in attacks]
    names = [f"{m}#{i}" if names.count(m) > 1 else m for i, m in enumerate(names)]
    result: dict[str, Any] = {
        "attack": attacks[0].config() if len(attacks) == 1 else [a.config() for a in attacks],
        "eps": eps_l,
        "accuracy": acc,
        "success_rate": (tally.success.double() / n).tolist(),
        "clean_accuracy": tally.clean / n,
        "n": n,
        "mode": "open" if is_open else "exhaustive",
        "per_attack": {
            m: (c.double() / n).tolist() for m, c in zip(names, tally.per_attack, strict=True)
        },
    }
    if is_open:
        result["attacked"] = {m: c.tolist() for m, c in zip(names, tally.attacked, strict=True)}
    if check and not is_open:
        what = "+".join(type(a).__name__ for a in attacks)
        _check_monotone(eps_l, acc, n, what)
    if tally.keep:
        result["examples"] = {
            "x": x_all[: tally.keep].cpu(),
            "y": y_all[: tally.keep].cpu(),
            "x_adv": torch.stack([torch.cat(k) for k in tally.kept]),
        }
    return result


def _resolved_target(
    attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: Any
) -> torch.Tensor:
    rule = t if t is not None else attack.default_target
    if rule == "random":  # the attack drew its own targets: an empty tensor says "unknown"
        return y.new_empty(0)
    with torch.no_grad(), model_state(model):
        res = resolve_target(model, x, y, rule)
    assert res is not None
    return res


def _check_single_step(
    model: nn.Module,
    attack: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: list[float | None],
    t: Any,
    multi: list[float],
) -> None:
    """Warn when an iterative L∞ attack left more accuracy (``multi``, per ε, on this batch)
    than FGSM at the same ε (one extra gradient)."""
    if (
        not attack.iterative
        or attack.norm != "linf"
        or attack.eps is None
        or any(e is None for e in eps)
    ):
        return
    t_eff = t if t is not None else attack.default_target
    values = [e for e in eps if e is not None]
    fgsm = FGSM(eps=attack.eps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = [
            float((_predict(model, xa) == y).float().mean())
            for xa in fgsm.sweep(model, x, y, values, t_eff)
        ]
    tol = max(0.02, 1.0 / x.shape[0])
    for e, s, m in zip(eps, single, multi, strict=False):
        if m > s + tol:
            warnings.warn(
                f"{type(attack).__name__} at ε={e:g} leaves accuracy {m:.3f} on the first batch, more than "
                f"single-step FGSM ({s:.3f}); an iterative attack should be at least as strong — check the "
                "step size and number of steps, or suspect gradient masking",
                SoundnessWarning,
                stacklevel=3,
            )
            return


def _named(
    models: Mapping[str, nn.Module] | Sequence[nn.Module], what: str
) -> dict[str, nn.Module]:
    if isinstance(models, nn.Module):
        raise TypeError(f"{what}s must be a mapping or a sequence of models, not one model")
    if isinstance(models, Mapping):
        out = dict(models)
    else:
        out = {f"{what}{i}": m for i, m in enumerate(models)}
    if not out:
        raise ValueError(f"need at least one {what} model")
    for name, m in out.items():
        _check_model(m, f"{what} {name!r}")
    return out


def transfer_matrix(
    sources: Mapping[str, nn.Module] | Sequence[nn.Module],
    victims: Mapping[str, nn.Module] | Sequence[nn.Module],
    attack: Attack,
    data: Data,
    eps: Sequence[float] | float | None = None,
    *,
    target: torch.Tensor | str | None = None,
    batch_size: int = 256,
    check: bool = True,
    per_sample: bool = False,
) -> dict[str, Any]:
    """Accuracy of every victim on examples crafted (white-box) against every source.

    Examples are crafted once per (source, batch) for all ε and evaluated on every victim.
    Under ``torchrun`` each rank attacks its block of whole batches and every rank returns
    the result of all images (as :func:`robust_accuracy`).

    Returns:
        dict with ``sources``, ``victims`` (names), ``eps``, ``accuracy`` as nested lists
        ``[source][victim][eps]``, ``clean_accuracy`` per victim, ``n`` and ``attack``; with
        ``per_sample``, also ``per_sample``: ``correct`` ((sources, victims, len(eps), N)
        bool) and ``clean`` ((victims, N) bool).
    """
    srcs, vics = _named(sources, "source"), _named(victims, "victim")
    _check_attack(attack)
    x_all, y_all = _tensors(data)
    eps_l = _eps_list(attack, eps)
    batch_size = check_int(batch_size, "batch_size")
    n = x_all.shape[0]
    target = _check_target(target, n)
    for m in [*srcs.values(), *vics.values()]:
        check_same_device(m, x_all[:0].to(_device(m)))  # dtype: float64 data, float32 model
    block = distributed.shard(n, batch_size=batch_size)
    x_mine, y_mine = x_all[block], y_all[block]
    t_mine = target[block] if isinstance(target, torch.Tensor) else target
    # per sample (this rank's block): clean-correct per victim, then correct per cell
    clean = torch.stack([_right(vm, x_mine, y_mine, batch_size) for vm in vics.values()])
    correct = torch.stack(
        [
            _transferred(attack, sm, vics, x_mine, y_mine, eps_l, t_mine, batch_size)
            for sm in srcs.values()
        ]
    )
    shape = (len(srcs), len(vics), len(eps_l))
    rows = torch.cat([clean, correct.flatten(0, 2)])  # (victims + cells, block)
    rows = distributed.gather(rows.T.contiguous(), n, batch_size=batch_size).T
    clean, correct = rows[: len(vics)], rows[len(vics) :].unflatten(0, shape)
    acc = (correct.sum(-1).double() / n).tolist()
    if check:  # only white-box cells: transferred accuracy need not fall with ε
        for s, (sname, sm) in enumerate(srcs.items()):
            for j, (vname, vm) in enumerate(vics.items()):
                if sm is vm:
                    _check_monotone(eps_l, acc[s][j], n, f"{type(attack).__name__} {sname}→{vname}")
    result = {
        "attack": attack.config(),
        "sources": list(srcs),
        "victims": list(vics),
        "eps": eps_l,
        "accuracy": acc,
        "clean_accuracy": dict(zip(vics, (clean.sum(-1).double() / n).tolist(), strict=False)),
        "n": n,
    }
    if per_sample:
        result["per_sample"] = {"correct": correct, "clean": clean}
    return result


def _right(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) bool on the CPU: ``model`` classifies each sample correctly."""
    right = [
        (_predict(model, xb) == yb).cpu() for xb, yb in _batches(x, y, batch_size, _device(model))
    ]
    return torch.cat(right) if right else torch.zeros(0, dtype=torch.bool)


def _transferred(
    attack: Attack,
    source: nn.Module,
    victims: dict[str, nn.Module],
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    eps: list[float | None],
    target: torch.Tensor | str | None,
    batch_size: int,
) -> torch.Tensor:
    """(victims, len(eps), N) bool: each victim right on the examples crafted on ``source``."""
    n = x_all.shape[0]
    out = torch.zeros(len(victims), len(eps), n, dtype=torch.bool)
    for start, (x, y) in zip(
        range(0, n, batch_size), _batches(x_all, y_all, batch_size, _device(source)), strict=False
    ):
        t = (
            target[start : start + batch_size].to(x.device)
            if isinstance(target, torch.Tensor)
            else target
        )
        for e, x_adv in enumerate(_sweep(attack, source, x, y, eps, t)):
            for j, vm in enumerate(victims.values()):
                right = _predict(vm, x_adv).to(y.device) == y
                out[j, e, start : start + x.shape[0]] = right.cpu()
    return out
