"""The attack base class's helpers, each against its contract: the generic ε sweep and
``with_eps``, the recorded settings (config, repr), binding, the class count of a model,
the summed loss gradient, the C&W margin and the masked-gradient counts."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from underfire.attacks import CW, FGSM, PGD, Attack, GradientMaskingWarning, margin_loss
from underfire.attacks.base import check_gradient, loss_gradient, num_classes_of


class Linear(nn.Module):
    """logits = W·flatten(x) on 1×2×2 inputs."""

    def __init__(self, w: list[list[float]]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, len(w), bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


W3 = [[1.0, -1.0, 0.0, 2.0], [-1.0, 1.0, 0.0, 1.0], [0.0, 0.5, -1.0, 0.0]]
X = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2])


# ---------------------------------------------------------------- the generic sweep, with_eps


def test_the_generic_sweep_is_one_call_per_eps():
    """Fails if Attack.sweep passes another model, input, label, target or ε to the call."""
    pgd = PGD(eps=0.3, steps=3, random_start=False)
    model, t = Linear(W3), torch.tensor([1, 2, 0])
    for target in (None, t):
        swept = list(pgd.sweep(model, X, Y, [0.05, 0.2], target))
        called = [PGD(eps=e, steps=3, random_start=False)(model, X, Y, target) for e in (0.05, 0.2)]
        assert len(swept) == 2
        for a, b in zip(swept, called, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_with_eps_is_a_copy_with_a_checked_float_radius():
    """Fails if with_eps changes the original, keeps the old radius, skips the check of ε
    under the attack's norm (an L2 radius may exceed 1), or accepts an attack without ε."""
    pgd = PGD(eps=0.3)
    other = pgd.with_eps(1)
    assert (pgd.eps, other.eps, type(other.eps)) == (0.3, 1.0, float)
    assert other is not pgd and other.steps == pgd.steps
    assert PGD(eps=0.5, norm="l2").with_eps(3.0).eps == 3.0
    with pytest.raises(ValueError, match=r"^eps=2 exceeds 1"):
        pgd.with_eps(2.0)
    with pytest.raises(ValueError, match=r"^eps must be ≥ 0, got -0.1$"):
        pgd.with_eps(-0.1)
    with pytest.raises(ValueError, match=r"^CW has no ε to sweep$"):
        CW().with_eps(0.1)


# ---------------------------------------------------------------- recorded settings, binding


class Recorded(Attack):
    """An attack whose settings hold every kind of value ``config`` must render."""

    name = "recorded"

    def __init__(self) -> None:
        self.eps, self.norm = 0.1, "linf"
        self.inner = FGSM(eps=0.2)
        self.loss = nn.functional.cross_entropy
        self.weights = torch.ones(2)
        self.fitted_ = 3  # fitted state
        self.deterministic = False  # derived flags
        self.queries = 10
        self.agreement = 0.5

    def _perturb(self, model, x, y, target):  # type: ignore[no-untyped-def]
        return x


def test_config_and_repr_record_the_settings_only():
    """Fails if fitted state (trailing "_") or derived flags (deterministic, queries,
    agreement) leak into the record, or a callable/tensor setting is not rendered by name."""
    assert Recorded().config() == {
        "name": "recorded",
        "eps": 0.1,
        "norm": "linf",
        "inner": {"name": "fgsm", "eps": 0.2, "norm": "linf"},
        "loss": "cross_entropy",
        "weights": "Tensor",
    }
    assert repr(FGSM(eps=0.25)) == "FGSM(eps=0.25, norm='linf')"


def test_bind_refuses_a_non_module_naming_its_type():
    """Fails if bind accepts something that is not a model or its message loses the type."""
    with pytest.raises(TypeError, match=r"^model must be a torch.nn.Module, got str$"):
        FGSM().bind("model")  # type: ignore[arg-type]


def test_a_subclass_with_call_options_gets_them_in_the_bound_form_too():
    """Fails if a call option (as ADV²'s ``target_map``) is lost or refused in the bound form
    ``attack.bind(model)(x, y, option=...)``, or leaks into a later call. (A subclass can no
    longer override ``__call__``: the base class's call is final.)"""
    seen: list[object] = []

    class Tagged(Attack):
        name = "tagged"
        call_options = ("tag",)
        _tag: object = None

        @contextmanager
        def _call_scope(self, **options):  # type: ignore[no-untyped-def,override]
            self._tag = options.get("tag")
            try:
                yield
            finally:
                self._tag = None

        def _perturb(self, model, x, y, target):  # type: ignore[no-untyped-def,override]
            seen.append(self._tag)
            return x.clone()

    model = Linear(W3)
    Tagged().bind(model)(X, Y, tag="a")
    Tagged()(model, X, Y, tag="b")
    Tagged()(model, X, Y)
    assert seen == ["a", "b", None]
    with pytest.raises(TypeError, match="unexpected keyword argument .tag."):
        FGSM()(model, X, Y, tag="c")


# ---------------------------------------------------------------- math helpers


class Counting(nn.Module):
    def __init__(self, declared: object) -> None:
        super().__init__()
        self.num_classes = declared
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.zeros(x.shape[0], 5)


@pytest.mark.parametrize(
    ("declared", "expected", "calls"),
    [(3, 3, 0), (1, 1, 0), (0, 5, 1), (None, 5, 1), ("3", 5, 1), ("missing", 5, 1)],
)
def test_num_classes_of_trusts_a_positive_int_attribute_else_runs_the_model(
    declared, expected, calls
):
    """Fails if a declared positive int is ignored (a forward pass run), or a missing, zero
    or non-int declaration is trusted instead of the output's width."""
    model = Counting(declared)
    if declared == "missing":
        del model.num_classes
    assert num_classes_of(model, X) == expected
    assert model.calls == calls


def test_loss_gradient_is_summed_over_the_batch():
    """Fails if the batch loss is averaged: each sample's gradient would shrink by N."""
    model = Linear(W3)
    batch, _ = loss_gradient(model, X, Y, targeted=False)
    single, _ = loss_gradient(model, X[:1], Y[:1], targeted=False)
    torch.testing.assert_close(batch[:1], single)


def test_margin_loss_clamps_at_minus_kappa_default_zero():
    """Fails if the default κ is not 0 (a reached goal must read exactly 0)."""
    logits = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0])
    assert margin_loss(logits, labels, targeted=False).tolist() == [0.0, 5.0]
    assert margin_loss(logits, labels, targeted=False, kappa=2.0).tolist() == [-2.0, 5.0]


@pytest.mark.parametrize("n", [1, 3])
def test_check_gradient_counts_masked_samples_per_sample(n):
    """Fails if the counts are not per sample (other axes, the whole batch), a batch of one is
    skipped, or finite gradients are reported as NaN."""
    grad = torch.ones(n, 2, 2, 2)
    grad[0] = 0.0  # one all-zero sample
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_gradient(grad, "X")
    messages = [str(w.message) for w in seen if issubclass(w.category, GradientMaskingWarning)]
    assert len(messages) == 1
    assert messages[0].startswith(f"X: 1 of {n} input gradients are all zero")


def test_check_gradient_counts_nan_and_underflowing_samples_with_the_advice():
    """Fails if NaN samples are counted over the whole batch, underflow is not "largest
    magnitude below 1e-30" (ordinary gradients of 0.5 are fine), or the advice is lost."""
    grad = torch.full((4, 1, 2, 2), 0.5)
    grad[0, 0, 0, 0] = float("nan")
    grad[1, 0, 1, 1] = float("inf")
    grad[2] = 1e-35
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_gradient(grad, "X")
    hint = (
        "a symptom of gradient masking (e.g. defensive distillation, Papernot et al. 2016), not "
        "of robustness; try a targeted attack (TGSM), a logit-margin attack (CW) or a "
        "transfer/black-box attack"
    )
    assert [str(w.message) for w in seen] == [
        f"X: 2 of 4 input gradients contain NaN or inf; {hint}",
        f"X: 1 of 4 input gradients underflow (max |∂L/∂x| < 1e-30); {hint}",
    ]


def test_with_eps_checks_a_radius_without_norm_as_linf():
    """Fails if an attack with ε but no norm is not checked on the L∞ scale (ε ≤ 1)."""
    attack = Recorded()
    attack.norm = None
    with pytest.raises(ValueError, match=r"^eps=2 exceeds 1"):
        attack.with_eps(2.0)
