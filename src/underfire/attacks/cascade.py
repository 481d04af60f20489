"""Robust accuracy that attacks only what is still open (AutoAttack's way, and further).

Three facts make most of an evaluation's work unnecessary, for untargeted attacks:

* within an attack, a sample whose iterate is misclassified is already broken at this ε:
  it keeps that iterate and leaves the batch (PGD's ``early_stop``);
* across radii, a sample broken at ε is broken at every larger ε (the same example lies in
  the larger ball), so radii are evaluated in ascending order, each on what the smaller one
  left robust;
* across attacks, a sample any attack broke is broken: attacks run cheap first, each on the
  samples still robust.

The last two hold for a transfer attack too (``attack_open(..., source=surrogate)``: crafted
on a surrogate, judged on the model); the first does not, since the surrogate being fooled
says nothing of the model, so a transferred attack runs its full course on each open sample.

The per-sample worst case stays exact: a sample counted robust here was attacked by every
attack at that ε and survived, and an attack's result on a sample does not depend on which
other samples are attacked beside it (PGD draws its random start for the whole batch and
attacks a ``subset``), so the robust accuracy is never higher than running every attack on
every sample at every ε; it is lower where an early iterate or a smaller ε found an example
that the full run lost again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from underfire.attacks.base import Attack
from underfire.core import distributed
from underfire.core.state import model_state

__all__ = [
    "OpenResult",
    "Tally",
    "attack_open",
    "by_cost",
    "cost",
    "kept_in",
    "open_batch",
    "openable",
    "with_early_exit",
]


def openable(attack: Attack) -> bool:
    """Whether a sample's result does not depend on the others attacked with it, so that
    attacking only the open samples keeps the worst case exact: deterministic attacks, and
    PGD-like ones that draw their randomness for the whole batch (``subset``). Not, e.g.,
    the substitute attack, whose substitute is fitted on the batch."""
    return attack.deterministic or "subset" in attack.call_options


def cost(attack: Attack) -> float:
    """Gradient evaluations per sample, roughly: what orders the attacks (cheap first)."""
    steps = float(getattr(attack, "steps", 1) or 1) if attack.iterative else 1.0
    for extra in ("restarts", "binary_search_steps"):
        steps *= float(getattr(attack, extra, 1) or 1)
    return steps


def by_cost(attacks: Sequence[Attack]) -> list[Attack]:
    """The attacks cheapest first (stable: equal costs keep the caller's order)."""
    return sorted(attacks, key=cost)


def with_early_exit(attack: Attack) -> Attack:
    """A copy of ``attack`` whose fooled samples leave the batch, where it supports that."""
    if getattr(attack, "early_stop", True) is False:
        attack = copy.copy(attack)
        attack.early_stop = True  # type: ignore[attr-defined]
    return attack


@dataclass
class OpenResult:
    """One attack run on the open samples of one batch, at every ε (ascending).

    Attributes:
        robust: (len(eps), B) bool, robust after this attack and everything before it.
        x_adv: per ε, (B, ...) the example that broke each sample (at this or a smaller ε, by
            this or an earlier attack), else the point this attack reached, else ``x``.
        attacked: per ε, how many samples this attack ran on.
    """

    robust: torch.Tensor
    x_adv: list[torch.Tensor]
    attacked: list[int]


@torch.no_grad()
def _wrong(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1) != y


def _run_on(
    attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor
) -> torch.Tensor:
    """``attack`` on the samples ``idx`` of the batch; (len(idx), ...) results."""
    if "subset" in attack.call_options:  # the whole batch's random start, only idx attacked
        call: Any = attack  # the overloads do not list the attacks' own call options
        return call(model, x, y, subset=idx)[idx]
    return attack(model, x[idx], y[idx])


def _shares_work(attack: Attack) -> bool:
    """A one-step attack whose sweep shares its work across ε (FGSM's one gradient)."""
    return (
        not attack.iterative
        and attack.eps is not None
        and attack.deterministic
        and type(attack)._sweep is not Attack._sweep
    )


def _shared_sweep(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float | None],
    robust: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
    """For an attack that shares work across ε: its sweep once, on the samples open at the
    smallest radius (a superset of those open at the larger ones, since ``prior`` can only
    shrink with ε). Returns (those indices, per ε their results), or None."""
    radii = [e for e in eps if e is not None and e > 0]
    if not _shares_work(attack) or len(radii) < 2 or len(radii) != len(eps) - eps.count(0.0):
        return None
    first = next(i for i, e in enumerate(eps) if e)
    idx = robust[first].nonzero()[:, 0]
    if idx.numel() == 0:
        return None
    swept = iter(attack.sweep(model, x[idx], y[idx], radii))
    return idx, [next(swept) if e else x[idx] for e in eps]


def attack_open(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float | None],
    prior: torch.Tensor,
    x_prior: Sequence[torch.Tensor] | None = None,
    source: nn.Module | None = None,
) -> OpenResult:
    """Run an untargeted ``attack`` on the samples still robust, ε ascending.

    Args:
        attack: an untargeted attack; for each ε, ``attack.with_eps(ε)`` (ε None: the
            attack as it is, e.g. CW).
        model: the victim; x, y: one batch on its device.
        eps: ascending radii (ε = 0 attacks nothing: the clean prediction stands).
        prior: (len(eps), B) bool, the samples robust before this attack at each ε (the
            clean-correct ones, and what earlier attacks left).
        x_prior: per ε, the earlier attacks' examples (None: ``x``).
        source: craft the examples on this model instead (a transfer attack from a
            surrogate), judged on ``model``. The attack then runs its full course on each
            open sample: stopping when the surrogate is fooled would weaken the transfer.
    """
    radii = [e for e in eps if e is not None]
    if radii != sorted(radii):
        raise ValueError(f"eps must be ascending for an open evaluation, got {list(eps)}")
    if prior.shape != (len(eps), x.shape[0]):
        raise ValueError(f"prior must be (len(eps), N) = {(len(eps), x.shape[0])}")
    crafted_on = model if source is None else source
    fast = with_early_exit(attack) if source is None else attack
    robust = prior.clone()
    x_adv = [(x if x_prior is None else x_prior[i]).clone() for i in range(len(eps))]
    attacked: list[int] = []
    shared = _shared_sweep(attack, crafted_on, x, y, eps, robust)
    for i, e in enumerate(eps):
        if i > 0:  # broken at the smaller ε: broken here, by the same example
            carried = robust[i] & ~robust[i - 1]
            x_adv[i][carried] = x_adv[i - 1][carried]
            robust[i] &= robust[i - 1]
        idx = robust[i].nonzero()[:, 0]
        attacked.append(0 if e == 0 else int(idx.numel()))  # ε = 0: the clean input stands
        if idx.numel() == 0 or e == 0:
            continue
        if shared is not None:  # this ε's results, from the one shared sweep
            out = shared[1][i][(shared[0][:, None] == idx[None]).nonzero()[:, 0]]
        else:
            out = _run_on(fast if e is None else fast.with_eps(e), crafted_on, x, y, idx)
        x_adv[i][idx] = out
        robust[i, idx[_wrong(model, out, y[idx])]] = False
    return OpenResult(robust, x_adv, attacked)


class Tally:
    """Counts of an evaluation over its batches: robust per ε (the worst case), per attack,
    successes, the per-sample rows they count, and the first ``keep`` examples per ε."""

    def __init__(self, n_attacks: int, n_eps: int, keep: int) -> None:
        self.correct = torch.zeros(n_eps, dtype=torch.long)
        self.per_attack = torch.zeros(n_attacks, n_eps, dtype=torch.long)
        self.attacked = torch.zeros(n_attacks, n_eps, dtype=torch.long)
        self.success = torch.zeros(n_eps, dtype=torch.long)
        self.clean = 0
        self.keep = keep
        self.kept: list[list[torch.Tensor]] = [[] for _ in range(n_eps)]
        #: per batch, (2·len(eps) + 1, B) bool: robust per ε, success per ε, clean-correct
        self.rows: list[torch.Tensor] = []
        self._clean: torch.Tensor | None = None
        self._last = torch.zeros(n_eps, dtype=torch.long)

    def add_clean(self, clean: torch.Tensor) -> None:
        """The batch's clean-correct samples (before its :meth:`add`)."""
        self.clean += int(clean.sum())
        self._clean = clean

    def add(self, robust: torch.Tensor, success: torch.Tensor, x_adv: list[torch.Tensor]) -> None:
        self._last = robust.sum(1).cpu()
        self.correct += self._last
        self.success += success.sum(1).cpu()
        clean = self._clean if self._clean is not None else robust.new_zeros(robust.shape[1])
        self.rows.append(torch.cat([robust, success, clean[None]]).cpu())
        self._clean = None
        for i, xa in enumerate(x_adv):
            have = sum(k.shape[0] for k in self.kept[i])
            if self.keep > have:
                self.kept[i].append(xa[: self.keep - have].detach().cpu())

    def first_accuracy(self, size: int) -> list[float]:
        return (self._last.double() / size).tolist()

    def per_sample(self) -> dict[str, torch.Tensor]:
        """``correct`` and ``success`` (len(eps), N) and ``clean`` (N,), bool, per sample."""
        rows = torch.cat(self.rows, 1) if self.rows else torch.zeros(0, 0, dtype=torch.bool)
        e = self.correct.shape[0]
        return {"correct": rows[:e], "success": rows[e : 2 * e], "clean": rows[2 * e]}

    def merge_ranks(self, n: int, batch_size: int, keep: int, like: torch.Tensor) -> None:
        """Under ``torchrun``, where each rank counted its block of whole batches
        (:func:`~underfire.core.distributed.shard` with ``batch_size``) and kept its part of
        the first ``keep`` examples: the counts of all ranks, their per-sample rows in the
        original order and the first ``keep`` examples, on every rank. ``like``: an empty
        batch of the data (the examples' shape and dtype, for ranks that kept none)."""
        if not distributed.active():
            return
        counts = [self.correct, self.per_attack, self.attacked, self.success]
        flat = torch.cat([c.flatten() for c in counts] + [torch.tensor([self.clean])])
        total = distributed.all_sum(flat)
        start = 0
        for c in counts:
            c.copy_(total[start : start + c.numel()].view_as(c))
            start += c.numel()
        self.clean = int(total[-1])
        width = 2 * self.correct.shape[0] + 1
        local = torch.cat(self.rows, 1) if self.rows else torch.zeros(width, 0, dtype=torch.bool)
        self.rows = [distributed.gather(local.T.contiguous(), n, batch_size=batch_size).T]
        if keep:
            sizes = [
                kept_in(keep, distributed.shard(n, batch_size=batch_size, rank_=r))
                for r in range(distributed.world_size())
            ]
            # (k_r, len(eps), C, H, W) on this rank, then the first ``keep`` of all ranks
            mine = torch.stack([torch.cat([like.cpu(), *k]) for k in self.kept], 1)
            every = distributed.gather_blocks(mine, sizes)
            self.kept = [[every[:, i]] for i in range(every.shape[1])]
            self.keep = keep


def kept_in(keep: int, block: slice) -> int:
    """How many of the first ``keep`` samples lie in ``block``."""
    return max(0, min(keep, block.stop) - block.start)


def open_batch(
    model: nn.Module,
    attacks: list[Attack],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: list[float | None],
    clean: torch.Tensor,
    tally: Tally,
) -> None:
    """Every attack on what is still robust in one batch, ε ascending, counted in ``tally``
    in the caller's order of ε."""
    order = sorted(range(len(eps)), key=lambda i: _radius(eps[i]))
    back = [order.index(i) for i in range(len(eps))]  # row of each ε of the caller's order
    robust = clean[None].expand(len(eps), -1).clone()
    x_adv: list[torch.Tensor] | None = None
    with model_state(model):
        for a, attack in enumerate(attacks):
            res = attack_open(attack, model, x, y, [eps[i] for i in order], robust, x_adv)
            robust, x_adv = res.robust, res.x_adv
            tally.per_attack[a] += robust.sum(1).cpu()[back]
            tally.attacked[a] += torch.tensor(res.attacked)[back]
    assert x_adv is not None
    tally.add(robust[back], ~robust[back], [x_adv[j] for j in back])


def _radius(e: float | None) -> float:
    return -1.0 if e is None else e
