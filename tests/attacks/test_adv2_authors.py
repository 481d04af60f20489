"""ADV² as the authors ran it (issue 24): which iterate is kept, presets by data set, and a
target is never given up when the warm start reached it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.attacks import ADV2, PGD
from underfire.attacks.adv2 import PRESETS, preset_for_size
from underfire.interpreters import CAM, GradCAM, Saliency
from underfire.metrics import l1_distance


@pytest.mark.parametrize("interp", [Saliency(), GradCAM(target_layer="2")], ids=["grad", "gradcam"])
def test_adv2_reaches_every_target_pgd_100_reaches_with_closer_maps(
    two_conv_digits, digits_splits, interp
) -> None:
    x, y = digits_splits["test"].x[:48], digits_splits["test"].y[:48]
    with torch.no_grad():
        ok = two_conv_digits(x).argmax(1) == y
    x, y = x[ok][:24], y[ok][:24]
    t = (y + 1) % 10
    x_pgd = PGD(eps=0.4, step_size=1 / 255, steps=100, random_start=False)(
        two_conv_digits, x, y, target=t
    )
    with torch.no_grad():
        pgd_hit = two_conv_digits(x_pgd).argmax(1) == t
    attack = ADV2(interp, eps=0.4, step_size=1 / 255, preset="small")
    attack(two_conv_digits, x, y, target=t)
    r = attack.result
    assert r is not None and (r.success | ~pgd_hit).all()  # every target PGD reached
    benign = interp(two_conv_digits, x, two_conv_digits(x).argmax(1).detach())
    pgd_l1 = l1_distance(interp(two_conv_digits, x_pgd, t), benign)
    assert r.l1.mean() < pgd_l1.mean()
    summary = r.summary()
    assert summary["confidence_successful"] == pytest.approx(float(r.confidence[r.success].mean()))


@pytest.fixture(scope="module")
def gap_cnn(digits_splits) -> nn.Module:
    """A digits CNN with a global-average-pooling head, so that CAM applies."""
    from underfire.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    Trainer(model, config=TrainConfig(epochs=15, batch_size=64, lr=3e-3, seed=0)).fit(
        digits_splits["train"]
    )
    return model.eval()


def test_keep_last_returns_the_last_iterate(gap_cnn, digits_splits) -> None:
    """With λ = 0 and plain cross-entropy the joint steps are targeted PGD steps, so the last
    iterate is PGD's; "last" returns it, "best" the closest map among the iterates."""
    model = gap_cnn
    x, y = digits_splits["test"].x[:8], digits_splits["test"].y[:8]
    t = (y + 1) % 10
    common = dict(
        eps=0.3, step_size=0.01, warm_steps=0, steps=40, lam=0.0, label_smoothing=1.0, kappa=0.0
    )
    x_pgd = PGD(eps=0.3, step_size=0.01, steps=40, random_start=False)(model, x, y, target=t)
    with torch.no_grad():
        hit = model(x_pgd).argmax(1) == t
    assert hit.sum() >= 3
    last = ADV2(CAM(target_layer="2"), keep="last", preset="small", **common)(model, x, y, target=t)
    torch.testing.assert_close(last[hit], x_pgd[hit])
    best = ADV2(CAM(target_layer="2"), keep="best", preset="small", **common)(model, x, y, target=t)
    assert not torch.equal(best[hit], x_pgd[hit])
    with pytest.raises(ValueError, match="keep must be 'best' or 'last'"):
        ADV2(CAM(), keep="first")  # type: ignore[arg-type]


def test_a_target_the_warm_start_reached_is_never_given_up(gap_cnn, digits_splits) -> None:
    """A map term so heavy that the joint steps walk away from the target: the warm start's
    iterate is kept, so ADV² succeeds wherever its PGD warm start did."""
    model = gap_cnn
    x, y = digits_splits["test"].x[8:16], digits_splits["test"].y[8:16]
    t = (y + 2) % 10
    x_pgd = PGD(eps=0.3, step_size=0.01, steps=40, random_start=False)(model, x, y, target=t)
    with torch.no_grad():
        pgd_hit = model(x_pgd).argmax(1) == t
    for keep in ("best", "last"):
        attack = ADV2(
            GradCAM(target_layer="2"),
            eps=0.3,
            step_size=0.01,
            warm_steps=40,
            steps=20,
            lam=1e6,
            kappa=0.999,
            keep=keep,
            preset="small",
        )
        attack(model, x, y, target=t)
        assert (attack.result.success | ~pgd_hit).all(), keep


def test_presets_follow_the_data_the_authors_attacked() -> None:
    assert preset_for_size(224) == "imagenet" and preset_for_size(32) == "cifar10"
    assert preset_for_size(28) == "small" and preset_for_size(8) == "small"
    grad = PRESETS["cifar10"]["gradient"]
    assert (grad["warm_steps"], grad["steps"], grad["lam"]) == (
        300,
        (301, 201, 101, 101),
        (0.001, 0.004, 0.01, 0.05),
    )
    assert (grad["pool"], grad["kappa"], grad["check_every"], grad["keep"]) == (2, 0.8, 10, "best")
    assert PRESETS["imagenet"]["gradient"]["pool"] == 4
    cam = PRESETS["cifar10"]["cam"]
    assert (cam["warm_steps"], cam["steps"], cam["lam"], cam["keep"]) == (
        400,
        1200,
        (5.0, 10.0),
        "last",
    )
    assert cam["label_smoothing"] == 1.0 and cam["distance"] == "mse"
    a = ADV2("grad")
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    a._check_call(net, torch.rand(2, 1, 32, 32), torch.tensor([0, 1]), "next")
    assert a.preset_ == "cifar10" and a.pool == 2 and a.keep == "best"


def test_confidence_over_the_successful_samples_is_the_papers_measure() -> None:
    from underfire.attacks.adv2.result import confidence_summary

    s = confidence_summary(torch.tensor([True, False, True]), torch.tensor([0.9, 0.2, 0.7]))
    assert s["n"] == 3 and s["success_rate"] == pytest.approx(2 / 3)
    assert s["confidence"] == pytest.approx(0.6)  # over all
    assert s["confidence_successful"] == pytest.approx(0.8)  # over the two successes
    assert (
        confidence_summary(torch.tensor([False]), torch.tensor([0.4]))["confidence_successful"]
        is None
    )
