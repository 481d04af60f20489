"""Exact values on tiny hand-weighted linear models (gradients computed by hand)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.attacks import BIM, FGSM, JSMA, PGD, TGSM, margin_loss, project


class Linear(nn.Module):
    """logits = W·flatten(x) + b on 1×2×2 inputs."""

    def __init__(self, w: list[list[float]], b: list[float]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, len(w))
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor(w))
            self.fc.bias.copy_(torch.tensor(b))
        self.num_classes = len(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


# ∂CE/∂x for y = 0 is p₁·(W₁ − W₀) = p₁·[−2, 2, 0, −1]: its sign is [−1, 1, 0, −1].
W2 = [[1.0, -1.0, 0.0, 2.0], [-1.0, 1.0, 0.0, 1.0]]
X = torch.full((1, 1, 2, 2), 0.5)
Y = torch.tensor([0])


def img(*v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32).view(1, 1, 2, 2)


def test_fgsm_exact():
    out = FGSM(eps=0.1)(Linear(W2, [0, 0]), X, Y)
    torch.testing.assert_close(out, img(0.4, 0.6, 0.5, 0.4))


def test_tgsm_exact():
    # −∂CE(t=1)/∂x = −p₀·(W₀ − W₁): the same sign as above.
    out = TGSM(eps=0.1)(Linear(W2, [0, 0]), X, Y)
    torch.testing.assert_close(out, img(0.4, 0.6, 0.5, 0.4))


def test_fgsm_clips_to_box():
    out = FGSM(eps=0.3)(Linear(W2, [0, 0]), img(0.1, 0.9, 0.5, 0.0), Y)
    torch.testing.assert_close(out, img(0.0, 1.0, 0.5, 0.0))


def test_bim_exact_projection():
    # Two steps of 0.1 along [−1, 1, 0, −1], projected back onto the ε = 0.15 box.
    out = BIM(eps=0.15, step_size=0.1, steps=2)(Linear(W2, [0, 0]), X, Y)
    torch.testing.assert_close(out, img(0.35, 0.65, 0.5, 0.35))


def test_pgd_l2_exact():
    # One normalized step: α·[−2, 2, 0, −1]/3.
    out = PGD(eps=1.0, step_size=0.3, steps=1, norm="l2", random_start=False)(
        Linear(W2, [0, 0]), X, Y
    )
    torch.testing.assert_close(out, img(0.3, 0.7, 0.5, 0.4))
    # A second step would leave the ε = 0.4 ball: projected back along the same direction.
    out = PGD(eps=0.4, step_size=0.3, steps=2, norm="l2", random_start=False)(
        Linear(W2, [0, 0]), X, Y
    )
    torch.testing.assert_close(out, X + 0.4 * img(-2, 2, 0, -1) / 3)


def test_jsma_exact_pair():
    # α = W_t = [1, 2, .5, −1], β = W_o = [−1, −.5, 0, 2]. Pairs with α > 0 and β < 0:
    # (0,1): −αβ = 3·1.5 = 4.5; (0,2): 1.5; (1,2): 1.25 → (0,1) is chosen; then Z_t = 3 > Z_o = −0.5.
    model = Linear([[-1.0, -0.5, 0.0, 2.0], [1.0, 2.0, 0.5, -1.0]], [1.0, 0.0])
    out = JSMA(theta=1.0, gamma=1.0)(
        model, torch.zeros(1, 1, 2, 2), torch.tensor([0]), target=torch.tensor([1])
    )
    torch.testing.assert_close(out, img(1, 1, 0, 0))


def test_jsma_decreasing_exact():
    # θ < 0 needs α < 0, β > 0. From x = 1 (Z_t = 2.5 < Z_o = 3.5): (0,3): α = 0, no; (1,3): α = 1, no;
    # (2,3): α = −.5, β = 2 → the only pair. Features 2, 3 go to 0: Z_t = 3 > Z_o = 1.5.
    model = Linear([[-1.0, -0.5, 0.0, 2.0], [1.0, 2.0, 0.5, -1.0]], [3.0, 0.0])
    out = JSMA(theta=-1.0, gamma=1.0)(
        model, torch.ones(1, 1, 2, 2), torch.tensor([0]), target=torch.tensor([1])
    )
    torch.testing.assert_close(out, img(1, 1, 0, 0))


def test_margin_loss_and_projection():
    logits = torch.tensor([[3.0, 1.0, -2.0]])
    assert margin_loss(logits, torch.tensor([0]), targeted=False).item() == pytest.approx(2.0)
    assert margin_loss(logits, torch.tensor([2]), targeted=True).item() == pytest.approx(5.0)
    assert margin_loss(logits, torch.tensor([0]), targeted=True, kappa=1.0).item() == pytest.approx(
        -1.0
    )
    d = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(project(d, 1.0, "l2"), torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(project(d, 3.5, "linf"), torch.tensor([[3.0, 3.5]]))


# ---- the L∞ steps of PGD, BIM and ADV² are the norm object's (core.norms.LINF)


def _dyadic_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A float64 linear model and inputs on the grid k/256 (0 and 1 included), so that with
    dyadic ε and α every sum below is exact."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 10)).double().eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 257, (32, 1, 6, 6), generator=gen).double() / 256
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    return model, x, torch.randint(0, 10, (32,), generator=gen)


def _linf_iterates(model, x, labels, start, eps, alpha, steps, *, targeted, form):
    """The L∞ iteration written with the norm object: ``form="project"`` is
    x + LINF.project(z − x, ε) clipped to [0, 1]; ``form="ball"`` is LINF.ball(x, ε).project_."""
    import torch.nn.functional as F

    from underfire.core.norms import LINF

    ball = LINF.ball(x, eps)
    x_adv = start.clone()
    for _ in range(steps):
        xa = x_adv.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xa), labels, reduction="sum")
        (grad,) = torch.autograd.grad(-loss if targeted else loss, xa)
        z = x_adv + alpha * LINF.direction(grad)
        if form == "project":
            x_adv = (x + LINF.project(z - x, eps)).clamp(0.0, 1.0)
        else:
            x_adv = ball.project_(z)
    return (x + LINF.project(x_adv - x, eps)).clamp(0.0, 1.0)  # the attack base's last step


@pytest.mark.parametrize("targeted", [False, True])
def test_bim_linf_steps_are_linf_project_exactly(targeted: bool) -> None:
    model, x, y = _dyadic_batch()
    eps, alpha, steps = 0.125, 0.0625, 4  # iterates leave the box and [0, 1] on the way
    target = (y + 1) % 10 if targeted else None
    out = BIM(eps=eps, step_size=alpha, steps=steps)(model, x, y, target=target)
    labels = target if target is not None else y
    for form in ("project", "ball"):
        ref = _linf_iterates(model, x, labels, x, eps, alpha, steps, targeted=targeted, form=form)
        assert torch.equal(out, ref), form


def test_pgd_linf_steps_are_the_norm_objects() -> None:
    from underfire.core.norms import LINF

    model, x, y = _dyadic_batch()
    eps, alpha, steps = 0.125, 0.0625, 4
    out = PGD(eps=eps, step_size=alpha, steps=steps, seed=3)(model, x, y)
    start = LINF.random_start(x, eps, torch.Generator().manual_seed(3))
    ball = _linf_iterates(model, x, y, start, eps, alpha, steps, targeted=False, form="ball")
    assert torch.equal(out, ball)
    # the random start is off the grid: the z − x round trip of LINF.project may differ by an ulp
    proj = _linf_iterates(model, x, y, start, eps, alpha, steps, targeted=False, form="project")
    assert (out - proj).abs().max() <= 2**-52


def test_adv2_signed_steps_project_with_the_linf_ball(monkeypatch, tiny_model, batch) -> None:
    from underfire.attacks import ADV2
    from underfire.attacks.adv2 import attack as adv2_attack
    from underfire.core.norms import LinfBall, LinfNorm

    calls: list[torch.Tensor] = []

    class Spy(LinfBall):
        def project_(self, z, index=None):  # type: ignore[no-untyped-def]
            out = super().project_(z, index)
            ref = (self.x + LinfNorm().project(z - self.x, self.eps)).clamp(0.0, 1.0)
            calls.append((out - ref).abs().max())
            return out

    class SpyNorm(LinfNorm):
        def ball(self, x, eps):  # type: ignore[no-untyped-def]
            return Spy(self, x, eps)

    monkeypatch.setattr(adv2_attack, "LINF", SpyNorm())
    x, y = batch
    attack = ADV2("grad", eps=0.1, warm_steps=0, steps=3)
    attack(tiny_model, x, y, target=(y + 1) % 10)
    assert len(calls) == len(attack.lambdas()) == 3  # every signed step, through the ball
    assert max(calls) <= 2**-23  # = x + LINF.project(z − x, ε) clipped, to float32 rounding
