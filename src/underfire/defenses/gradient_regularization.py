"""Input-gradient regularization (double backpropagation).

Ross & Doshi-Velez, "Improving the Adversarial Robustness and Interpretability of Deep Neural
Networks by Regularizing their Input Gradients", AAAI 2018; the penalty itself is
Drucker & LeCun, "Improving generalization performance using double backpropagation", 1992.

Convention used here (per example, independent of the batch size)::

    loss = mean_i CE_i + lam · mean_i ‖∂(Σ_j CE_j)/∂x_i‖²

The authors' code averages the cross-entropy over the batch *before* differentiating and
multiplies the squared norm by ``λ/2``::

    loss_paper = mean_i CE_i + (λ/2)·‖∂(mean_j CE_j)/∂x‖² = mean_i CE_i + (λ/(2N))·mean_i ‖g_i‖²

so ``lam = λ_paper / (2·N)``; the paper's MNIST λ = 56,234 at N = 256 is ``lam ≈ 109.8``
(:meth:`GradientRegularization.from_paper`). When the examples do not interact
(evaluation-mode batch norm) ``g_i = ∂CE_i/∂x_i``; in training mode, batch norm couples the
examples of a batch and ``g_i`` is the gradient of the batch's summed loss, as in the
authors' code.

Cost: training-mode batch-norm layers run through
:func:`underfire.core.autograd.batchnorm.fast_batch_norm_double_backward` while the penalty's
graph is built, an exact closed-form second derivative that replaces PyTorch's generic one
(on the Ross CNN this brings a step from about 3× to about 2.3× a plain one on a CPU;
``bench/training.py``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from underfire.core.autograd.batchnorm import fast_batch_norm_double_backward
from underfire.core.validation import check_int, check_positive
from underfire.defenses.base import DEFENSES

__all__ = [
    "DEFAULT_LAM",
    "GradientRegularization",
    "INSENSITIVE_DEFAULT_LAM",
    "input_gradient_penalty",
    "paper_lambda_to_lam",
    "penalty_from_forward",
]


def paper_lambda_to_lam(paper_lambda: float, batch_size: int) -> float:
    """Convert the paper's batch-averaged λ into this project's per-example ``lam``.

    Args:
        paper_lambda: λ as in Ross & Doshi-Velez (2018) (e.g. 56,234 for MNIST).
        batch_size: the batch size N it was chosen for (256 in the paper).

    Returns:
        ``paper_lambda / (2 · batch_size)``.
    """
    batch_size = check_int(batch_size, "batch_size")
    paper_lambda = check_positive(paper_lambda, "paper_lambda", allow_zero=True)
    return paper_lambda / (2.0 * batch_size)


def _per_example_loss(
    logits: torch.Tensor, y: torch.Tensor, certainty_insensitive: bool
) -> torch.Tensor:
    if certainty_insensitive:
        # cross-entropy against the uniform label distribution: −(1/K)·Σ_k log p_k
        return -F.log_softmax(logits, dim=1).mean(dim=1)
    return F.cross_entropy(logits, y, reduction="none")


def input_gradient_penalty(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    certainty_insensitive: bool = False,
    create_graph: bool = True,
    fast_batch_norm: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy, squared input-gradient norms and the input gradients, in one forward.

    Args:
        model: classifier returning logits.
        x: inputs (N, C, H, W).
        y: labels (N,).
        certainty_insensitive: differentiate the cross-entropy against the uniform label
            distribution instead of the true labels (the variant in Ross & Doshi-Velez's code).
        create_graph: keep the graph of the gradient so the penalty can be trained on
            (double backpropagation).
        fast_batch_norm: differentiate training-mode batch norm twice with underfire's
            closed-form second derivative (same values, several times cheaper) instead of
            PyTorch's generic one.

    Returns:
        ``(ce, sq_norms, grad)``: mean cross-entropy on the true labels (scalar),
        ``‖g_i‖²`` per example (N,), and ``g`` (N, C, H, W).
    """
    x = x.detach().requires_grad_(True)
    with (
        fast_batch_norm_double_backward(model)
        if create_graph and fast_batch_norm
        else nullcontext()
    ):
        logits = model(x)
    return penalty_from_forward(
        logits, x, y, certainty_insensitive=certainty_insensitive, create_graph=create_graph
    )


def penalty_from_forward(
    logits: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    certainty_insensitive: bool = False,
    create_graph: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`input_gradient_penalty` from a forward pass already made: ``logits = model(x)``
    with ``x`` a leaf that requires grad (so another term can share that forward pass, e.g.
    the adversarial examples of :class:`~underfire.defenses.AdversarialTraining` crafted on it).
    The graph is kept (``retain_graph``) for further gradients."""
    if not x.requires_grad:
        raise ValueError("x must require grad and be the input of logits' forward pass")
    ce = F.cross_entropy(logits, y)
    penalized = (
        ce * y.numel() if not certainty_insensitive else _per_example_loss(logits, y, True).sum()
    )
    (grad,) = torch.autograd.grad(penalized, x, create_graph=create_graph, retain_graph=True)
    sq_norms = grad.flatten(1).pow(2).sum(dim=1)
    return ce, sq_norms, grad


class GradientRegularization:
    """Training objective: cross-entropy plus ``lam`` times the mean squared input-gradient norm.

    ``loss = mean_i CE_i + lam · mean_i ‖∂(Σ_j CE_j)/∂x_i‖²`` (Ross & Doshi-Velez, AAAI 2018;
    double backpropagation, Drucker & LeCun 1992). See the module docstring for the
    conversion from the paper's batch-averaged λ (``lam = λ_paper / (2N)``).

    Args:
        lam: weight of the penalty (per-example convention), ≥ 0.
        certainty_insensitive: penalize the gradient of the cross-entropy against the uniform
            label distribution (insensitive to the true label) instead of the true labels.
        fast_batch_norm: use underfire's closed-form batch-norm second derivative (default;
            exact, see the module docstring); ``False`` uses PyTorch's generic one.

    Example:
        >>> objective = GradientRegularization.from_paper(56_234, batch_size=256)
        >>> loss = objective(model, x, y); loss.backward()
    """

    def __init__(
        self,
        lam: float = 100.0,
        *,
        certainty_insensitive: bool = False,
        fast_batch_norm: bool = True,
    ) -> None:
        self.lam = check_positive(lam, "lam", allow_zero=True)
        self.certainty_insensitive = bool(certainty_insensitive)
        self.fast_batch_norm = bool(fast_batch_norm)
        self.name = "certainty-insensitive" if certainty_insensitive else "gradreg"

    @classmethod
    def from_paper(
        cls, paper_lambda: float, batch_size: int = 256, **kwargs: Any
    ) -> GradientRegularization:
        """Build from the paper's λ (chosen at batch size ``batch_size``), see :func:`paper_lambda_to_lam`."""
        return cls(paper_lambda_to_lam(paper_lambda, batch_size), **kwargs)

    def terms(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two terms separately: ``{"ce", "penalty", "loss"}`` (penalty already unweighted)."""
        x = x.detach().requires_grad_(True)
        with self.forward_context(model):
            logits = model(x)
        return self.terms_from_forward(logits, x, y)

    def forward_context(self, model: nn.Module) -> AbstractContextManager[Any]:
        """The context the forward pass of :meth:`terms_from_forward` must run in (underfire's
        closed-form batch-norm second derivative, unless ``fast_batch_norm=False``)."""
        return fast_batch_norm_double_backward(model) if self.fast_batch_norm else nullcontext()

    def terms_from_forward(
        self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """:meth:`terms` from ``logits = model(x)`` made in :meth:`forward_context`, ``x`` a
        leaf requiring grad; the graph stays usable for other gradients."""
        ce, sq_norms, _ = penalty_from_forward(
            logits, x, y, certainty_insensitive=self.certainty_insensitive
        )
        penalty = sq_norms.mean()
        return {"ce": ce, "penalty": penalty, "loss": ce + self.lam * penalty}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.lam == 0:
            return F.cross_entropy(model(x), y)
        return self.terms(model, x, y)["loss"]

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lam": self.lam,
            "certainty_insensitive": self.certainty_insensitive,
        }

    def __repr__(self) -> str:
        return f"GradientRegularization(lam={self.lam:g}, certainty_insensitive={self.certainty_insensitive})"


#: Ross & Doshi-Velez's MNIST λ = 56,234 at batch 256, in this project's per-example convention.
DEFAULT_LAM = paper_lambda_to_lam(56_234, 256)
#: The authors' certainty-insensitive λ on MNIST: 1,000 at batch 256 (their model file
#: ``mnist-insensitive-1000.0-cnn.pkl``; 177.8 on notMNIST, 1,000 on SVHN), not gradreg's 56,234.
INSENSITIVE_DEFAULT_LAM = paper_lambda_to_lam(1_000, 256)


@DEFENSES.register("gradreg")
def _gradreg(lam: float = DEFAULT_LAM) -> GradientRegularization:
    return GradientRegularization(lam)


@DEFENSES.register("certainty-insensitive")
def _certainty_insensitive(lam: float = INSENSITIVE_DEFAULT_LAM) -> GradientRegularization:
    return GradientRegularization(lam, certainty_insensitive=True)
