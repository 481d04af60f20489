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

import itertools
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from underfire.attacks.base import Attack, SoundnessWarning, resolve_target
from underfire.attacks.cascade import Tally, by_cost, open_batch, openable
from underfire.attacks.fgsm import FGSM
from underfire.core.forward import checked_forward
from underfire.core.state import model_state
from underfire.core.threads import forward_macs, job_threads
from underfire.core.validation import (
    check_eps,
    check_images,
    check_int,
    check_labels,
    check_same_device,
)

__all__ = ["collect_data", "robust_accuracy", "transfer_matrix"]

Data = Any  # a Dataset, a DataLoader, an ImageDataset (``.x``, ``.y``) or an (x, y) pair


def collect_data(data: Any, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a Dataset, a DataLoader or an ``(x, y)`` pair, as tensors.

    Items of a Dataset are (x, y) pairs (x of shape (C, H, W)); batches of a DataLoader are
    (x, y) batches. Images are checked to be floats in [0, 1]; labels to be integer class
    indices of shape (N,), returned as int64. ``n`` is None (all) or an int ≥ 1.
    """
    if n is not None:
        n = check_int(n, "n", minimum=1)
    if isinstance(data, (str, bytes, Mapping)):
        raise TypeError(
            "data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got "
            f"{type(data).__name__}"
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        _check_pair(x, y)
    elif isinstance(getattr(data, "x", None), torch.Tensor) and hasattr(data, "y"):
        x, y = data.x, data.y
        _check_pair(x, y)
    elif isinstance(data, Iterable) or hasattr(data, "__getitem__"):
        xs, ys, count = [], [], 0
        loader = data if isinstance(data, torch.utils.data.DataLoader) else _iterate(data)
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise TypeError(
                    f"each item of the data must be an (x, y) pair; got {type(batch).__name__}"
                )
            bx, by = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
            if bx.dim() == 3 and by.dim() == 0:  # a Dataset item, not a batch
                bx, by = bx[None], by[None]
            xs.append(bx)
            ys.append(by)
            count += bx.shape[0]
            if n is not None and count >= n:
                break
        if not xs:
            raise ValueError("the data is empty; pass at least one (x, y) sample")
        x, y = torch.cat(xs), torch.cat(ys)
    else:
        raise TypeError(
            "data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got "
            f"{type(data).__name__}"
        )
    if n is not None:
        x, y = x[:n], y[:n]
    check_images(x)
    check_labels(y, x.shape[0], "labels")
    return x, y.long()


def _check_pair(x: torch.Tensor, y: object) -> None:
    """Images given whole with their labels: every label must match an image (also those
    past ``n``: different lengths mean a broken data set, not a shorter one)."""
    if x.dim() != 4:
        check_images(x)  # the shape error, not a labels error
    check_labels(y, x.shape[0], "labels")


def _iterate(dataset: Any) -> Iterable[Any]:
    for i in range(len(dataset)):
        yield dataset[i]


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
) -> dict[str, Any]:
    """Accuracy of ``model`` under ``attack`` for each ε (``None``: the attack's own ε).

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
    tally = Tally(len(attacks), len(eps_l), keep_examples)
    macs = forward_macs(model, x_all[:1].to(device), batch=min(batch_size, n))
    with job_threads(macs if device.type == "cpu" else None):
        _evaluate(model, attacks, x_all, y_all, eps_l, target, batch_size, is_open, check, tally)
    return _result(model, attacks, x_all, y_all, eps_l, tally, is_open, check)


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
        if is_open:
            open_batch(model, attacks, x, y, eps_l, clean, tally)
        else:
            _exhaustive_batch(model, attacks, x, y, eps_l, t, tally)
        tally.clean += int(clean.sum())
        if check and first and is_open:
            _probe(model, attacks, x, y, eps_l)
        elif check and first and len(attacks) == 1:
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
) -> dict[str, Any]:
    """Accuracy of every victim on examples crafted (white-box) against every source.

    Examples are crafted once per (source, batch) for all ε and evaluated on every victim.

    Returns:
        dict with ``sources``, ``victims`` (names), ``eps``, ``accuracy`` as nested lists
        ``[source][victim][eps]``, ``clean_accuracy`` per victim, ``n`` and ``attack``.
    """
    srcs, vics = _named(sources, "source"), _named(victims, "victim")
    _check_attack(attack)
    x_all, y_all = _tensors(data)
    eps_l = _eps_list(attack, eps)
    batch_size = check_int(batch_size, "batch_size")
    n = x_all.shape[0]
    target = _check_target(target, n)
    correct = torch.zeros(len(srcs), len(vics), len(eps_l), dtype=torch.long)
    clean = torch.zeros(len(vics), dtype=torch.long)
    for m in [*srcs.values(), *vics.values()]:
        check_same_device(m, x_all[:0].to(_device(m)))  # dtype: float64 data, float32 model
    for j, vm in enumerate(vics.values()):
        for x, y in _batches(x_all, y_all, batch_size, _device(vm)):
            clean[j] += int((_predict(vm, x) == y).sum())
    for s, sm in enumerate(srcs.values()):
        for start, (x, y) in zip(
            range(0, n, batch_size), _batches(x_all, y_all, batch_size, _device(sm)), strict=False
        ):
            t = (
                target[start : start + batch_size].to(x.device)
                if isinstance(target, torch.Tensor)
                else target
            )
            for e, x_adv in enumerate(_sweep(attack, sm, x, y, eps_l, t)):
                for j, vm in enumerate(vics.values()):
                    correct[s, j, e] += int((_predict(vm, x_adv).to(y.device) == y).sum())
    acc = (correct.double() / n).tolist()
    if check:  # only white-box cells: transferred accuracy need not fall with ε
        for s, (sname, sm) in enumerate(srcs.items()):
            for j, (vname, vm) in enumerate(vics.items()):
                if sm is vm:
                    _check_monotone(eps_l, acc[s][j], n, f"{type(attack).__name__} {sname}→{vname}")
    return {
        "attack": attack.config(),
        "sources": list(srcs),
        "victims": list(vics),
        "eps": eps_l,
        "accuracy": acc,
        "clean_accuracy": dict(zip(vics, (clean.double() / n).tolist(), strict=False)),
        "n": n,
    }
