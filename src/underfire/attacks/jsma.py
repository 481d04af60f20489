"""Jacobian-based saliency map attack (Papernot, McDaniel, Jha, Fredrikson, Celik & Swami,
IEEE EuroS&P 2016, "The Limitations of Deep Learning in Adversarial Settings").

A targeted L0 attack. Each iteration computes the forward derivative of the logits, and
over pairs (p, q) of features still in the search domain Γ

    α = Σ_{i∈{p,q}} ∂Z_t/∂x_i,   β = Σ_{i∈{p,q}} Σ_{j≠t} ∂Z_j/∂x_i,

picks the pair maximizing −α·β subject to α > 0, β < 0 when increasing features (θ > 0),
or α < 0, β > 0 when decreasing them (θ < 0) — the paper's Algorithm 3 and its decreasing
variant. Both features move by θ (clipped to [0, 1]) and leave Γ. It stops per sample when
the prediction is t, when no pair qualifies, or after ⌊γ·d/2⌋ iterations (at most a
fraction γ of the d features modified).

Which output is differentiated (``on``): Papernot et al. define the forward derivative on
the network's output F, and implementations differ. ``"logits"`` (the default) differentiates
the logits Z: cleverhans 2.0's ``jacobian_graph``/``jsma_batch``, which Ross & Doshi-Velez
(AAAI 2018) call with their model's logits (``generate_jsma_examples`` in their
adversarial-robustness code), so it is the paper's JSMA. ``"probabilities"`` differentiates the
softmax: the ``SaliencyMapMethod`` class of cleverhans ≥ 2.1 (``jsma_symbolic`` uses
``model.get_probs``). Since Σ_j p_j = 1, there β = −α exactly (used here instead of summing
K − 1 gradients whose float error only adds noise), so every pair with α > 0 qualifies and the
one with the largest α² wins; the logits' condition α > 0, β < 0 is stricter, so the two
differ in success rate (measured on digits: docs/ross2018.md).

Γ starts with the features that can still move in θ's direction (x < 1 for θ > 0, x > 0 for
θ < 0), as in cleverhans.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from underfire.attacks.base import ATTACKS, Attack, check_target_rule
from underfire.core.validation import check_float, check_int

__all__ = ["JSMA", "saliency_pairs"]


def saliency_pairs(
    alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, *, increase: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best pair per sample of the pairwise saliency map.

    Args:
        alpha: (n, d) ∂Z_t/∂x. beta: (n, d) Σ_{j≠t} ∂Z_j/∂x. domain: (n, d) bool, Γ.
        increase: θ > 0 (α > 0, β < 0) or θ < 0 (α < 0, β > 0).

    Returns:
        p, q (n,) feature indices with p < q, and found (n,) bool (some pair qualified).
    """
    d = alpha.shape[1]
    a = alpha[:, :, None] + alpha[:, None, :]
    b = beta[:, :, None] + beta[:, None, :]
    valid = (a > 0) & (b < 0) if increase else (a < 0) & (b > 0)
    pair_ok = domain[:, :, None] & domain[:, None, :]
    upper = torch.ones(d, d, dtype=torch.bool, device=alpha.device).triu_(1)
    valid &= pair_ok & upper
    score = torch.where(valid, -a * b, torch.zeros((), dtype=a.dtype, device=a.device))
    flat = torch.where(
        valid.flatten(1), score.flatten(1), torch.full((), -1.0, dtype=a.dtype, device=a.device)
    )
    best = flat.argmax(1)
    found = valid.flatten(1).any(1)
    return best // d, best % d, found


@ATTACKS.register("jsma")
class JSMA(Attack):
    """Jacobian-based saliency map attack (Papernot et al. 2016), targeted, L0.

    Args:
        theta: θ, change applied to each selected feature; > 0 increases features (the
            paper's θ = +1), < 0 decreases them. |θ| ≤ 1.
        gamma: γ ∈ (0, 1], the largest fraction of features that may be modified.
        target: rule used when the call passes ``target=None`` (default "next").
        chunk: largest number of pairwise-saliency entries (samples × d²) held at once.
        on: ``"logits"`` (the forward derivative of the logits, as in the paper's code) or
            ``"probabilities"`` (of the softmax, as in cleverhans ≥ 2.1); see the module
            docstring.

    ``eps`` is None: the budget is L0 (at most 2·⌊γ·d/2⌋ features change).
    """

    name = "jsma"
    iterative = True
    minimal = True

    def __init__(
        self,
        *,
        theta: float = 1.0,
        gamma: float = 0.1,
        target: str = "next",
        chunk: int = 2**22,
        on: Literal["logits", "probabilities"] = "logits",
    ) -> None:
        theta = check_float(theta, "theta", low=-1.0, high=1.0)
        if theta == 0:
            raise ValueError(
                "theta must be a nonzero number in [-1, 1] (θ > 0 increases features, θ < 0 "
                "decreases them), got 0"
            )
        self.theta = theta
        self.gamma = check_float(gamma, "gamma", low=0.0, high=1.0, low_inclusive=False)
        if target is None:
            raise ValueError(
                "JSMA is a targeted attack: target must be one of 'next', 'random', 'least-likely'"
            )
        self.default_target = check_target_rule(target)
        self.chunk = check_int(chunk, "chunk")
        if on not in ("logits", "probabilities"):
            raise ValueError(f"on must be 'logits' or 'probabilities', got {on!r}")
        self.on: Literal["logits", "probabilities"] = on

    def max_iterations(self, d: int) -> int:
        return math.floor(d * self.gamma / 2)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        if target is None:
            raise ValueError("JSMA needs a target (a tensor of classes or a rule such as 'next')")
        n, shape = x.shape[0], x.shape[1:]
        d = x[0].numel()
        increase = self.theta > 0
        x_adv = x.flatten(1).clone()
        domain = x_adv < 1 if increase else x_adv > 0
        active = torch.arange(n, device=x.device)
        per_chunk = max(1, self.chunk // (d * d))
        for _ in range(self.max_iterations(d)):
            xa = x_adv[active].view(-1, *shape).requires_grad_(True)
            logits = model(xa)
            ta = target[active]
            going = (logits.detach().argmax(1) != ta) & (domain[active].sum(1) >= 2)
            if not bool(going.all()):
                active = active[going]
                if active.numel() == 0:
                    break
                logits, ta = logits[going], ta[going]
            # Gradients of the kept rows only (rows of stopped samples get zeros, dropped below).
            if self.on == "probabilities":
                probs = F.softmax(logits, dim=1)
                g_t = torch.autograd.grad(probs.gather(1, ta[:, None]).sum(), xa)[0]
                if g_t.shape[0] != active.numel():
                    g_t = g_t[going]
                alpha = g_t.flatten(1)
                beta = -alpha  # Σ_j ∂p_j/∂x = 0
            else:
                g_t, g_all = _two_grads(logits, ta, xa)
                if g_t.shape[0] != active.numel():
                    g_t, g_all = g_t[going], g_all[going]
                alpha = g_t.flatten(1)
                beta = g_all.flatten(1) - alpha
            dom = domain[active]
            ps, qs, found = [], [], []
            for s in range(0, active.numel(), per_chunk):
                p, q, f = saliency_pairs(
                    alpha[s : s + per_chunk],
                    beta[s : s + per_chunk],
                    dom[s : s + per_chunk],
                    increase=increase,
                )
                ps.append(p)
                qs.append(q)
                found.append(f)
            p, q, f = torch.cat(ps), torch.cat(qs), torch.cat(found)
            rows = active[f]
            p, q = p[f], q[f]
            x_adv[rows, p] = (x_adv[rows, p] + self.theta).clamp(0.0, 1.0)
            x_adv[rows, q] = (x_adv[rows, q] + self.theta).clamp(0.0, 1.0)
            domain[rows, p] = False
            domain[rows, q] = False
            active = rows  # samples with no qualifying pair stop (the paper's search fails)
            if active.numel() == 0:
                break
        return x_adv.view_as(x)


def _two_grads(
    logits: torch.Tensor, target: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """∂Z_t/∂x and ∂(Σ_j Z_j)/∂x per sample: two backward passes instead of K."""
    g_t = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x, retain_graph=True)[0]
    g_all = torch.autograd.grad(logits.sum(), x)[0]
    return g_t, g_all
