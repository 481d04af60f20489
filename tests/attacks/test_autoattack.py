"""APGD, APGD-T, FAB, Square and AutoAttack: exact pieces, the reference (torchattacks 3.5.1)
on a trained digits model, the black-box property and the per-sample record."""

from __future__ import annotations

import pytest
import torch
import torchattacks
from torch import nn

from underfire.attacks import APGD, APGDT, FAB, PGD, AutoAttack, Square
from underfire.attacks.apgd import apgd_checkpoints, dlr_loss
from underfire.attacks.fab import box_hyperplane_projection
from underfire.robustness import collect_data, robust_accuracy


@pytest.fixture(scope="module")
def digits(trained_digits):
    model, test = trained_digits
    x, y = collect_data(test, 40)
    return model, x, y


def robust(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> int:
    with torch.no_grad():
        return int((model(x_adv).argmax(1) == y).sum())


# ---------------------------------------------------------------------------- exact pieces


def test_checkpoints_follow_the_papers_schedule():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9]


def test_dlr_loss_values():
    logits = torch.tensor([[4.0, 3.0, 1.0, 0.0], [1.0, 5.0, 2.0, 0.0]])
    y = torch.tensor([0, 0])
    # untargeted: −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)
    torch.testing.assert_close(dlr_loss(logits, y, None), torch.tensor([-1 / 3, 4 / 4]))
    t = torch.tensor([2, 1])
    # targeted: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2)
    torch.testing.assert_close(dlr_loss(logits, y, t), torch.tensor([-3 / 3.5, 4 / 4.5]))
    # scale invariant
    torch.testing.assert_close(dlr_loss(7 * logits, y, t), dlr_loss(logits, y, t))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_box_hyperplane_projection_is_the_closed_form_inside_the_box(norm):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 30, generator=g)
    x = torch.full((5, 30), 0.5)
    c = torch.tensor([0.3, -0.2, 0.0, 0.5, -0.1])
    delta = box_hyperplane_projection(w, c, x, norm)
    torch.testing.assert_close((w * delta).sum(1), c)
    if norm == "linf":  # minimal L∞ step: |c| / ‖w‖₁ along sign(w)
        expect = (c.abs() / w.abs().sum(1))[:, None] * (w * c.sign()[:, None]).sign()
    else:  # minimal L2 step: c·w / ‖w‖²
        expect = c[:, None] * w / (w * w).sum(1, keepdim=True)
    torch.testing.assert_close(delta, expect)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_box_hyperplane_projection_respects_the_box(norm):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 20, generator=g)
    x = torch.rand(8, 20, generator=g)
    reach = torch.where(w > 0, (1 - x) * w, -x * w).sum(1)  # the most w·δ the box allows
    c = reach * torch.tensor([0.9, 0.5, 0.99, 0.1, 0.7, 0.3, 2.0, 0.8])  # one infeasible
    delta = box_hyperplane_projection(w, c, x, norm)
    z = x + delta
    assert bool((z >= -1e-6).all()) and bool((z <= 1 + 1e-6).all())
    feasible = c <= reach
    torch.testing.assert_close((w * delta).sum(1)[feasible], c[feasible])
    # the infeasible one moves to the box's corner along sign(w)
    torch.testing.assert_close((w * delta).sum(1)[~feasible], reach[~feasible])


# ---------------------------------------------------------------------------- the reference


@pytest.mark.parametrize(("norm", "eps"), [("Linf", 0.1), ("L2", 0.8)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_at_least_as_strong_as_torchattacks(digits, norm, eps, loss):
    model, x, y = digits
    kw = {"norm": norm, "eps": eps, "steps": 20, "loss": loss}
    # same seed; the reference's own spread over seeds is reported on failure
    theirs = [robust(model, torchattacks.APGD(model, seed=s, **kw)(x, y), y) for s in (0, 1)]
    ours = robust(model, APGD(model, seed=0, **kw)(x, y), y)
    assert ours <= theirs[0] + 1, (ours, theirs)
    assert ours < robust(model, x, y)


def test_apgdt_at_least_as_strong_as_torchattacks(digits):
    model, x, y = digits
    kw = {"norm": "Linf", "eps": 0.1, "steps": 10}
    theirs = robust(model, torchattacks.APGDT(model, seed=0, n_classes=10, **kw)(x, y), y)
    ours = robust(model, APGDT(model, seed=0, **kw)(x, y), y)
    assert ours <= theirs + 1, (ours, theirs)


@pytest.mark.parametrize(("norm", "eps", "targeted"), [("Linf", 0.1, True), ("L2", 0.8, False)])
def test_fab_at_least_as_strong_as_torchattacks(digits, norm, eps, targeted):
    model, x, y = digits
    x, y = x[:20], y[:20]
    kw = {"norm": norm, "eps": eps, "steps": 20}
    ref = torchattacks.FAB(model, multi_targeted=targeted, n_classes=10, seed=0, **kw)(x, y)
    ours = FAB(model, targeted=targeted, seed=0, **kw)(x, y)
    assert robust(model, ours, y) <= robust(model, ref, y) + 1
    assert robust(model, ours, y) < robust(model, x, y)


@pytest.mark.parametrize(("norm", "eps"), [("Linf", 0.15), ("L2", 1.2)])
def test_square_at_least_as_strong_as_torchattacks(digits, norm, eps):
    model, x, y = digits
    kw = {"norm": norm, "eps": eps, "n_queries": 150}
    theirs = [robust(model, torchattacks.Square(model, seed=s, **kw)(x, y), y) for s in (0, 1)]
    attack = Square(model, seed=0, **kw)
    ours = robust(model, attack(x, y), y)
    assert ours <= theirs[0] + 1, (ours, theirs)
    q = attack.queries_
    assert q is not None and q.shape == y.shape and int(q.max()) <= 150 and int(q.min()) >= 1
    with torch.no_grad():
        fooled_first = model(x).argmax(1) != y
    assert bool((q[fooled_first] == 1).all())  # a misclassified point costs one query


def test_autoattack_at_least_as_strong_as_torchattacks(digits):
    model, x, y = digits
    x, y = x[:24], y[:24]
    # torchattacks' AutoAttack runs its attacks with 10 steps: compare at that budget
    ref = torchattacks.AutoAttack(model, norm="Linf", eps=0.15, n_classes=10, seed=0)(x, y)
    attack = AutoAttack(eps=0.15, steps=10, seed=0)
    ours = attack(model, x, y)
    assert robust(model, ours, y) <= robust(model, ref, y) + 1
    # the record: every point broken by exactly the attack named, robust ones unnamed
    with torch.no_grad():
        still = (model(ours).argmax(1) == y).tolist()
    assert [b == "" for b in attack.broken_by_] == still
    assert attack.robust_accuracy_ == pytest.approx(sum(still) / len(still))
    assert set(attack.broken_by_) <= {"", "clean", "apgd-ce", "apgd-t", "fab-t", "square"}
    assert "apgd-ce" in attack.broken_by_


# ---------------------------------------------------------------------------- behaviour


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        raise AssertionError("a gradient was taken")


class _GradientFree(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(_NoBackward.apply(x))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_never_takes_a_gradient(digits, norm):
    model, x, y = digits
    guarded = _GradientFree(model).eval()
    eps = 0.2 if norm == "linf" else 1.5
    with pytest.raises(AssertionError, match="a gradient was taken"):
        PGD(eps=eps, steps=2, norm=norm)(guarded, x[:4], y[:4])  # the guard works
    x_adv = Square(eps=eps, norm=norm, n_queries=100)(guarded, x[:10], y[:10])
    assert robust(model, x_adv, y[:10]) < robust(model, x[:10], y[:10])


class _Quantized(nn.Module):
    """A non-differentiable input layer (rounding to 1/4 steps): zero input gradients."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def test_square_breaks_a_gradient_masked_model_that_pgd_cannot(digits):
    model, x, y = digits
    masked = _Quantized(model).eval()
    x, y = x[:20], y[:20]
    clean = robust(masked, x, y)
    with pytest.warns(Warning, match="gradients are all zero"):
        pgd = PGD(eps=0.2, steps=20, random_start=False)(masked, x, y)
    assert robust(masked, pgd, y) == clean  # PGD sees a flat loss and moves nothing
    square = Square(eps=0.2, n_queries=300)(masked, x, y)
    assert robust(masked, square, y) <= clean // 2


def test_robust_accuracy_runs_autoattack_over_radii(digits):
    model, x, y = digits
    x, y = x[:12], y[:12]
    attack = AutoAttack(eps=0.1, steps=5, n_queries=50)
    got = robust_accuracy(model, attack, (x, y), eps=[0.05, 0.2])
    acc = got["accuracy"]
    assert acc[0] >= acc[1]
    direct = attack.with_eps(0.2)
    direct(model, x, y)
    assert acc[1] == pytest.approx(direct.robust_accuracy_)


def test_versions_and_validation():
    names = [n for n, _ in AutoAttack(version="plus").sequence()]
    assert names == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert [n for n, _ in AutoAttack(version="rand").sequence()] == ["apgd-ce", "apgd-dlr"]
    with pytest.raises(ValueError, match="version must be one of"):
        AutoAttack(version="fast")
    with pytest.raises(ValueError, match="loss must be one of"):
        APGD(loss="hinge")
    with pytest.raises(ValueError, match="p_init"):
        Square(p_init=1.5)
    assert APGD(n_restarts=3, norm="Linf").restarts == 3  # torchattacks' spellings
    assert FAB(multi_targeted=True, n_classes=10).targeted


@pytest.mark.parametrize("eps", [0.1, 0.2])
def test_autoattack_on_an_unseen_cnn_is_no_weaker_than_torchattacks(
    two_conv_digits, digits_splits, eps
) -> None:
    x, y = collect_data(digits_splits["test"], 100)
    ref = torchattacks.AutoAttack(two_conv_digits, norm="Linf", eps=eps, n_classes=10, seed=0)(x, y)
    ours = AutoAttack(eps=eps, steps=10, seed=0)(two_conv_digits, x, y)
    clean = robust(two_conv_digits, x, y)
    assert clean >= 90  # a real model, not a trivially broken one
    # at most one image per hundred more robust than under the reference
    assert robust(two_conv_digits, ours, y) <= robust(two_conv_digits, ref, y) + 1
    assert (ours - x).abs().max() <= eps + 1e-6
