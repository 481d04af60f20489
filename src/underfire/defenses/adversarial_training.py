"""Adversarial training (Goodfellow, Shlens, Szegedy, ICLR 2015; Madry et al., ICLR 2018).

``loss = (1 − ratio)·inner(x, y) + ratio·adv_inner(x_adv, y)`` where ``x_adv`` is crafted by
an attack against the current model and treated as a constant (no gradient flows through the
attack). ``inner`` is plain cross-entropy by default and ``adv_inner`` defaults to ``inner``.

- The paper's version (Ross & Doshi-Velez; Goodfellow et al.): FGSM at ε = 0.3, ratio ½,
  examples crafted with the model's own *predicted* labels (``labels="predicted"``, which
  avoids label leaking, Kurakin et al. 2017).
- "Both" defenses of Ross & Doshi-Velez (AAAI 2018), as their code computes it
  (``adversarial_training_loss`` in their ``neural_network.py``, ``train_models.py``):
  ``½·[CE(x) + λ·penalty(x)] + ½·CE(x_adv)`` — the gradient penalty on the clean inputs only
  (``inner=GradientRegularization(lam)``, ``adv_inner`` cross-entropy), FGSM on the labels
  of the model's own argmax, crafted on the clean half's training-mode forward pass
  (``craft="train"``). The authors choose λ for it from logspace(2, 5, 13) and do not publish
  the value they chose; the registry and the reproduction use gradreg's.
- PGD adversarial training (Madry et al.): ``attack=PGD(...)``, usually ``ratio=1`` and
  ``labels="true"``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.state import model_state
from underfire.core.validation import check_float
from underfire.defenses.base import DEFENSES
from underfire.defenses.gradient_regularization import DEFAULT_LAM, GradientRegularization
from underfire.train import CrossEntropy

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


Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class AdversarialTraining:
    """Training objective mixing clean and adversarial examples.

    Args:
        attack: ``attack(model, x, y) -> x_adv`` (an :mod:`underfire.attacks` attack). Default
            ``FGSM(eps=0.3)``, the setting of Ross & Doshi-Velez (2018).
        ratio: weight of the adversarial term in [0, 1] (½ in Goodfellow et al. 2015).
        labels: ``"predicted"`` crafts the examples against the model's own predictions
            (the paper's version), ``"true"`` against the training labels (Madry et al.).
        inner: the objective of the clean batch (default cross-entropy); a
            :class:`GradientRegularization` gives the combined defense.
        adv_inner: the objective of the adversarial batch (default: ``inner``); the authors'
            "both" uses cross-entropy here, the penalty staying on the clean inputs.
        craft: ``"eval"`` runs the attack as a library attack does (evaluation mode, its own
            forward pass); ``"train"`` crafts FGSM from the clean term's own training-mode
            forward pass (its dropout mask and batch statistics, no extra batch-norm update),
            as the authors' TensorFlow graph does. ``"train"`` needs an FGSM attack and
            ``inner`` cross-entropy or a :class:`GradientRegularization`.
        name: name recorded in configs (default derived from the parts).
    """

    def __init__(
        self,
        attack: Attack | None = None,
        *,
        ratio: float = 0.5,
        labels: Literal["predicted", "true"] = "predicted",
        inner: Objective | None = None,
        adv_inner: Objective | None = None,
        craft: Literal["eval", "train"] = "eval",
        name: str | None = None,
    ) -> None:
        from underfire.attacks import FGSM  # the attack library is imported only when used

        ratio = check_float(ratio, "ratio", low=0.0, high=1.0)
        if labels not in ("predicted", "true"):
            raise ValueError(f"labels must be 'predicted' or 'true', got {labels!r}")
        if craft not in ("eval", "train"):
            raise ValueError(f"craft must be 'eval' or 'train', got {craft!r}")
        if attack is None:
            attack = FGSM(eps=0.3)
        if not callable(attack):
            raise TypeError(
                f"attack must be callable as attack(model, x, y), got {type(attack).__name__}"
            )
        if craft == "train":
            if not isinstance(attack, FGSM):
                raise ValueError(
                    f"craft='train' crafts FGSM from the training forward pass; got "
                    f"{type(attack).__name__}: pass an FGSM or use craft='eval'"
                )
            if attack.eps is None:
                raise ValueError("craft='train' needs the FGSM's eps; give FGSM(eps=...)")
            if not (inner is None or isinstance(inner, (CrossEntropy, GradientRegularization))):
                raise ValueError(
                    "craft='train' shares the clean term's forward pass, which needs inner "
                    f"cross-entropy or GradientRegularization, got {type(inner).__name__}; "
                    "use craft='eval'"
                )
        self.attack = attack
        self.ratio = float(ratio)
        self.labels = labels
        self.inner = inner
        self.adv_inner = adv_inner
        self.craft = craft
        #: FGSM's ε when crafting on the training forward pass
        self._craft_eps = float(attack.eps or 0.0) if isinstance(attack, FGSM) else 0.0
        inner_name = getattr(inner, "name", None)
        self.name = name or ("adversarial" if inner is None else f"{inner_name}+adversarial")

    def adversarial_examples(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """``x_adv`` against the current model, detached (no gradient through the attack)."""
        if self.labels == "predicted":
            with model_state(model), torch.no_grad():
                y = model(x).argmax(dim=1)
        return self.attack(model, x, y).detach()

    def _clean_and_crafted(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``craft="train"``: the clean term and FGSM's ``x_adv`` from one forward pass."""
        x_leaf = x.detach().requires_grad_(True)
        gradreg = self.inner if isinstance(self.inner, GradientRegularization) else None
        regularized = gradreg is not None and gradreg.lam > 0
        with gradreg.forward_context(model) if gradreg is not None else nullcontext():
            logits = model(x_leaf)
        if gradreg is not None and regularized:
            clean = gradreg.terms_from_forward(logits, x_leaf, y)["loss"]
        else:
            clean = F.cross_entropy(logits, y)
        labels = logits.detach().argmax(dim=1) if self.labels == "predicted" else y
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels), x_leaf, retain_graph=True)
        eps = self._craft_eps
        x_adv = (x.detach() + eps * grad.sign()).clamp(0.0, 1.0) if eps > 0 else x.detach()
        return clean, x_adv.detach()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inner = self.inner or _cross_entropy
        adv_inner = self.adv_inner or inner
        if self.ratio == 0.0:
            return inner(model, x, y)
        clean: torch.Tensor | None = None
        if self.craft == "train":
            clean, x_adv = self._clean_and_crafted(model, x, y)
        else:
            x_adv = self.adversarial_examples(model, x, y)
            if self.ratio < 1.0:
                clean = inner(model, x, y)
        if clean is None or self.ratio == 1.0:
            return adv_inner(model, x_adv, y)
        return (1.0 - self.ratio) * clean + self.ratio * adv_inner(model, x_adv, y)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "name": self.name,
            "attack": attack_config(self.attack),
            "ratio": self.ratio,
            "labels": self.labels,
        }
        if self.inner is not None:
            cfg["inner"] = _objective_config(self.inner)
        if self.adv_inner is not None:
            cfg["adv_inner"] = _objective_config(self.adv_inner)
        if self.craft != "eval":  # absent from configs recorded before the option existed
            cfg["craft"] = self.craft
        return cfg

    def __repr__(self) -> str:
        return (
            f"AdversarialTraining(attack={self.attack!r}, ratio={self.ratio:g}, "
            f"labels={self.labels!r}, inner={self.inner!r}, adv_inner={self.adv_inner!r}, "
            f"craft={self.craft!r})"
        )


def _objective_config(objective: Any) -> dict[str, Any]:
    if hasattr(objective, "config") and callable(objective.config):
        cfg = objective.config()
        if isinstance(cfg, dict):
            return cfg
    return {"name": getattr(objective, "name", type(objective).__name__)}


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
    """The authors' "both": ½·[CE(x) + lam·penalty(x)] + ½·CE(FGSM(x)), see the module
    docstring (their λ for it is not published; the default is gradreg's)."""
    return AdversarialTraining(
        _fgsm(adv_eps),
        ratio=adv_ratio,
        labels="predicted",
        inner=GradientRegularization(lam),
        adv_inner=CrossEntropy(),
        craft="train",
        name="both",
    )
