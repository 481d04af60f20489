"""AutoAttack (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): the field's standard robustness evaluation.

A fixed sequence of parameter-free attacks, each run only on the points every earlier attack
left robust (so the cost falls as the sequence goes on), with a per-sample record of the
attack that broke each point:

* ``"standard"``: APGD-CE, APGD-T (targeted DLR, 9 target classes), FAB-T (9 target
  classes), Square (5000 queries);
* ``"plus"``: APGD-CE and APGD-DLR with 5 restarts, FAB with 5 restarts, Square, APGD-T,
  FAB-T;
* ``"rand"`` (randomized defenses): APGD-CE and APGD-DLR with expectation over
  transformation (20 gradients per step).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from underfire.attacks.apgd import APGD, APGDT, peer_kwargs
from underfire.attacks.base import ATTACKS, Attack, check_ball
from underfire.attacks.fab import FAB
from underfire.attacks.square import Square
from underfire.core.validation import check_int, check_seed

__all__ = ["VERSIONS", "AutoAttack"]

VERSIONS = ("standard", "plus", "rand")


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """AutoAttack (Croce & Hein 2020): the standard ensemble, run on the still-robust points.

    Args:
        eps: radius ε of the ball.
        norm: "linf" or "l2".
        version: "standard", "plus" or "rand" (see the module's docstring).
        steps: iterations of APGD and FAB (the paper: 100).
        n_queries: Square's query budget (the paper: 5000).
        n_target_classes: target classes of APGD-T and FAB-T (the paper: 9, capped at K − 1).
        seed: seeds every attack of the sequence.

    After a call: ``broken_by_`` names, per sample, the attack that broke it ("clean" for a
    point misclassified before any attack, "" for a point still robust);
    ``robust_accuracy_`` is the fraction still robust; ``queries_`` Square's queries.

    Example:
        >>> attack = AutoAttack(eps=8/255)
        >>> x_adv = attack(model, x, y); attack.robust_accuracy_, attack.broken_by_[:5]
        >>> robust_accuracy(model, AutoAttack(eps=0.1), data, eps=[0.1, 0.2])
    """

    name = "autoattack"
    iterative = True
    deterministic = False

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        version: str = "standard",
        steps: int = 100,
        n_queries: int = 5000,
        n_target_classes: int = 9,
        seed: int | None = 0,
    ) -> None:
        self.norm, self.eps = check_ball(norm, eps)
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
        self.version = version
        self.steps = check_int(steps, "steps", minimum=1)
        self.n_queries = check_int(n_queries, "n_queries", minimum=1)
        self.n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)
        self.seed = check_seed(seed)
        self.broken_by_: list[str] = []
        self.robust_accuracy_: float | None = None
        self.queries_: torch.Tensor | None = None

    @classmethod
    def _constructor_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.pop("n_classes", None)  # torchattacks asks for K; we read it from the logits
        return super()._constructor_kwargs(peer_kwargs(kwargs))

    def sequence(self) -> list[tuple[str, Attack]]:
        """The (name, attack) pairs this version runs, in order, at this ε."""
        eps, norm, seed, steps = float(self.eps or 0.0), self.norm or "linf", self.seed, self.steps
        common: dict[str, Any] = {"eps": eps, "norm": norm, "seed": seed}
        k = self.n_target_classes
        if self.version == "rand":
            return [
                ("apgd-ce", APGD(steps=steps, loss="ce", eot_iter=20, **common)),
                ("apgd-dlr", APGD(steps=steps, loss="dlr", eot_iter=20, **common)),
            ]
        square = ("square", Square(n_queries=self.n_queries, **common))
        apgdt = ("apgd-t", APGDT(steps=steps, n_target_classes=k, **common))
        fabt = ("fab-t", FAB(steps=steps, targeted=True, n_target_classes=k, **common))
        if self.version == "plus":
            return [
                ("apgd-ce", APGD(steps=steps, loss="ce", restarts=5, **common)),
                ("apgd-dlr", APGD(steps=steps, loss="dlr", restarts=5, **common)),
                ("fab", FAB(steps=steps, restarts=5, **common)),
                square,
                apgdt,
                fabt,
            ]
        return [("apgd-ce", APGD(steps=steps, loss="ce", **common)), apgdt, fabt, square]

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        labels = y if target is None else target
        with torch.no_grad():
            pred = model(x).argmax(1)
        robust = pred != labels if target is not None else pred == y
        broken = ["" if bool(r) else "clean" for r in robust.tolist()]
        self.queries_ = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        x_adv = x.clone()
        if self.eps:
            for name, attack in self.sequence():
                todo = robust.nonzero().squeeze(1)
                if todo.numel() == 0:
                    break
                xs, ys = x[todo], y[todo]
                ts = None if target is None else target[todo]
                # inside the borrowed model state already: the hook, then the base's bounds
                adv = attack._finalize(xs, attack._perturb(model, xs, ys, ts))
                if isinstance(attack, Square) and attack.queries_ is not None:
                    self.queries_[todo] += attack.queries_
                with torch.no_grad():
                    pred = model(adv).argmax(1)
                ok = pred == ts if ts is not None else pred != ys
                x_adv[todo[ok]] = adv[ok]
                robust[todo[ok]] = False
                for i in todo[ok].tolist():
                    broken[i] = name
        self.broken_by_ = broken
        self.robust_accuracy_ = float(robust.float().mean()) if x.shape[0] else None
        return x_adv
