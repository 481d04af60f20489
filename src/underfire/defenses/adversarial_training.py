"""Adversarial training (Goodfellow, Shlens, Szegedy, ICLR 2015; Madry et al., ICLR 2018).

``loss = (1 − ratio)·inner(x, y) + ratio·inner(x_adv, y)`` where ``x_adv`` is crafted by an
attack against the current model and treated as a constant (no gradient flows through the
attack). ``inner`` is plain cross-entropy by default; with
:class:`~underfire.defenses.GradientRegularization` it is the "both" defense of Ross &
Doshi-Velez (AAAI 2018): gradient regularization plus adversarial training.

- The paper's version (Ross & Doshi-Velez; Goodfellow et al.): FGSM at ε = 0.3, ratio ½,
  examples crafted with the model's own *predicted* labels (``labels="predicted"``, which
  avoids label leaking, Kurakin et al. 2017).
- PGD adversarial training (Madry et al.): ``attack=PGD(...)``, usually ``ratio=1`` and
  ``labels="true"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.defenses.base import DEFENSES
from underfire.defenses.gradient_regularization import DEFAULT_LAM, GradientRegularization

__all__ = ["AdversarialTraining", "attack_config"]

Attack = Callable[..., torch.Tensor]


def attack_config(attack: Any) -> dict[str, Any]:
    """A JSON-able description of an attack: its class and public scalar hyperparameters."""
    if hasattr(attack, "config") and callable(attack.config):
        cfg = attack.config()
        if isinstance(cfg, dict):
            return {"name": type(attack).__name__} | cfg
    params = {
        k: v
        for k, v in sorted(vars(attack).items())
        if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None)))
    }
    return {"name": type(attack).__name__} | params


def _cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


class AdversarialTraining:
    """Training objective mixing clean and adversarial examples.

    Args:
        attack: ``attack(model, x, y) -> x_adv`` (an :mod:`underfire.attacks` attack). Default
            ``FGSM(eps=0.3)``, the setting of Ross & Doshi-Velez (2018).
        ratio: weight of the adversarial term in [0, 1] (½ in Goodfellow et al. 2015).
        labels: ``"predicted"`` crafts the examples against the model's own predictions
            (the paper's version), ``"true"`` against the training labels (Madry et al.).
        inner: the objective applied to the clean and adversarial batches (default
            cross-entropy); a :class:`GradientRegularization` gives the combined defense.
        name: name recorded in configs (default derived from the parts).
    """

    def __init__(
        self,
        attack: Attack | None = None,
        *,
        ratio: float = 0.5,
        labels: Literal["predicted", "true"] = "predicted",
        inner: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio!r}")
        if labels not in ("predicted", "true"):
            raise ValueError(f"labels must be 'predicted' or 'true', got {labels!r}")
        if attack is None:
            from underfire.attacks import FGSM

            attack = FGSM(eps=0.3)
        if not callable(attack):
            raise TypeError(
                f"attack must be callable as attack(model, x, y), got {type(attack).__name__}"
            )
        self.attack = attack
        self.ratio = float(ratio)
        self.labels = labels
        self.inner = inner
        inner_name = getattr(inner, "name", None)
        self.name = name or ("adversarial" if inner is None else f"{inner_name}+adversarial")

    def adversarial_examples(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """``x_adv`` against the current model, detached (no gradient through the attack)."""
        if self.labels == "predicted":
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    y = model(x).argmax(dim=1)
            finally:
                model.train(was_training)
        return self.attack(model, x, y).detach()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inner = self.inner or _cross_entropy
        if self.ratio == 0.0:
            return inner(model, x, y)
        x_adv = self.adversarial_examples(model, x, y)
        if self.ratio == 1.0:
            return inner(model, x_adv, y)
        return (1.0 - self.ratio) * inner(model, x, y) + self.ratio * inner(model, x_adv, y)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "name": self.name,
            "attack": attack_config(self.attack),
            "ratio": self.ratio,
            "labels": self.labels,
        }
        if self.inner is not None:
            inner_cfg = (
                self.inner.config()
                if hasattr(self.inner, "config")
                else {"name": getattr(self.inner, "name", type(self.inner).__name__)}
            )
            cfg["inner"] = inner_cfg
        return cfg

    def __repr__(self) -> str:
        return f"AdversarialTraining(attack={self.attack!r}, ratio={self.ratio:g}, labels={self.labels!r}, inner={self.inner!r})"


def _fgsm(adv_eps: float) -> Any:
    from underfire.attacks import FGSM  # the attack library is imported only when used

    return FGSM(eps=adv_eps)


@DEFENSES.register("adversarial")
def _adversarial(adv_eps: float = 0.3, adv_ratio: float = 0.5) -> AdversarialTraining:
    return AdversarialTraining(_fgsm(adv_eps), ratio=adv_ratio, labels="predicted")


@DEFENSES.register("pgd-adversarial")
def _pgd_adversarial(
    adv_eps: float = 0.3,
    adv_ratio: float = 1.0,
    adv_steps: int = 10,
    adv_step_size: float | None = None,
) -> AdversarialTraining:
    from underfire.attacks import PGD

    step_size = adv_step_size if adv_step_size is not None else 2.5 * adv_eps / adv_steps
    return AdversarialTraining(
        PGD(eps=adv_eps, step_size=step_size, steps=adv_steps),
        ratio=adv_ratio,
        labels="true",
        name="pgd-adversarial",
    )


@DEFENSES.register("both")
def _both(
    lam: float = DEFAULT_LAM, adv_eps: float = 0.3, adv_ratio: float = 0.5
) -> AdversarialTraining:
    return AdversarialTraining(
        _fgsm(adv_eps),
        ratio=adv_ratio,
        labels="predicted",
        inner=GradientRegularization(lam),
        name="both",
    )
