"""FGSM's step at every ε: its sweep (one gradient for every ε, used by robust_accuracy) gives
exactly what a call per ε gives (the same step, clipped to [0, 1], targeted when asked, ε = 0
the input itself), and the largest ε still steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.attacks import FGSM, TGSM


class Linear(nn.Module):
    """logits = W·flatten(x) on 1×2×2 inputs: the gradient's sign is known by hand."""

    def __init__(self, w: list[list[float]]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, len(w), bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(w))
        self.num_classes = len(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


# Two classes, y = 0: ∂CE/∂x = p₁·(W₁ − W₀) = p₁·[−2, 2, 0, −1], sign [−1, 1, 0, −1].
W2 = [[1.0, -1.0, 0.0, 2.0], [-1.0, 1.0, 0.0, 1.0]]
# Three classes whose untargeted and targeted (t = 2) steps differ in sign.
W3 = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]


def img(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32).view(1, 1, 2, 2)


def test_sweep_steps_each_eps_along_the_gradient_sign_and_clips_to_the_box():
    """Fails if a swept ε is not x + ε·sign(∇) clipped to [0, 1] (wrong sign or operator,
    a bound of the clip lost or moved, ε = 1 or ε > 0 taken for no step)."""
    x = img(0.3, 0.8, 0.5, 0.2)
    out = list(FGSM(eps=0.1).sweep(Linear(W2), x, torch.tensor([0]), [0.0, 0.1, 0.5, 1.0]))
    expected = [
        x,
        img(0.2, 0.9, 0.5, 0.1),
        img(0.0, 1.0, 0.5, 0.0),
        img(0.0, 1.0, 0.5, 0.0),
    ]
    assert len(out) == len(expected)
    for got, want in zip(out, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-7)


def test_sweep_at_eps_zero_returns_the_input_bit_for_bit():
    """Fails if ε = 0 takes a (clipped) step instead of returning the input: an input inside
    check_images' tolerance above 1 would come back clipped, unlike FGSM(eps=0)'s."""
    x = img(0.25, 1.0 + 5e-7, 0.5, 0.0)
    (out,) = FGSM(eps=0.1).sweep(Linear(W2), x, torch.tensor([0]), [0.0])
    assert torch.equal(out, x)
    assert torch.equal(out, FGSM(eps=0.0)(Linear(W2), x, torch.tensor([0])))


@pytest.mark.parametrize("n", [1, 3])
def test_sweep_equals_one_call_per_eps_targeted_or_not(n):
    """Fails if the sweep drops an explicit target (untargeted step instead), mishandles a
    batch of one sample, or differs from the ordinary call at any ε."""
    model = Linear(W3)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 2, 2, generator=g)
    y = torch.zeros(n, dtype=torch.long)
    t = torch.full((n,), 2)
    eps = [0.05, 0.2]
    for target in (None, t):
        swept = list(FGSM(eps=0.3).sweep(model, x, y, eps, target))
        called = [FGSM(eps=e)(model, x, y, target) for e in eps]
        for a, b in zip(swept, called, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    untargeted = next(FGSM().sweep(model, x, y, [0.2]))
    targeted = next(FGSM().sweep(model, x, y, [0.2], t))
    assert not torch.equal(untargeted, targeted)  # the case can tell the two apart


def test_tgsm_sweep_uses_its_default_target_rule():
    """Fails if TGSM's sweep does not resolve its "next" rule from y (untargeted steps, or
    no labels passed to the rule)."""
    model = Linear(W3)
    x = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1, 2, 0])
    swept = list(TGSM(eps=0.3).sweep(model, x, y, [0.1, 0.3]))
    called = [TGSM(eps=e)(model, x, y) for e in (0.1, 0.3)]
    for a, b in zip(swept, called, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert not torch.equal(swept[1], FGSM(eps=0.3)(model, x, y))


def test_sweep_of_an_empty_batch_yields_one_empty_batch_per_eps():
    """Fails if the empty batch is not answered without running the model."""
    x = torch.zeros(0, 1, 2, 2)
    out = list(FGSM().sweep(Linear(W2), x, torch.zeros(0, dtype=torch.long), [0.1, 0.2]))
    assert [o.shape for o in out] == [x.shape, x.shape]


def test_tgsm_without_a_target_rule_is_refused_pointing_to_fgsm():
    """Fails if TGSM(target=None) is accepted or its message loses the rules or the fix."""
    with pytest.raises(
        ValueError,
        match=r"^TGSM is targeted: target must be one of 'next', 'random', 'least-likely'; "
        r"use FGSM for untargeted$",
    ):
        TGSM(target=None)  # type: ignore[arg-type]


def test_a_call_at_eps_one_still_steps_and_the_config_records_linf():
    """Fails if ε = 1 is taken for "no perturbation", or the attack's recorded norm (results
    files, reports) is not "linf"."""
    out = FGSM(eps=1.0)(Linear(W2), img(0.3, 0.8, 0.5, 0.2), torch.tensor([0]))
    torch.testing.assert_close(out, img(0.0, 1.0, 0.5, 0.0), rtol=0, atol=0)
    assert FGSM(eps=0.25).config() == {"name": "fgsm", "eps": 0.25, "norm": "linf"}
