"""MASK (Fong & Vedaldi 2017): pieces, validation, batching, failure flags, warm start, and
informative maps on a trained model."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from underfire.interpreters import Mask, gaussian_blur, resize_maps, total_variation
from underfire.interpreters.mask import (
    MaskResult,
    MaskWarning,
    default_mask_size,
    shift_images,
    upsample_operator,
)
from underfire.interpreters.mask_reference import PERTURBATIONS
from underfire.robustness import collect_data


@pytest.fixture(scope="module")
def batch(digits_splits):
    return digits_splits["test"].x[:8], digits_splits["test"].y[:8]


@contextmanager
def quiet() -> Iterator[None]:
    """MaskWarning ignored (tests that look at numbers, not at the warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskWarning)
        yield


def test_sizes_adapt_to_input():
    assert default_mask_size(224) == 28 and default_mask_size(28) == 7 and default_mask_size(8) == 4
    assert default_mask_size(3) == 3
    mask = Mask()
    size, sigma, jitter = mask.sizes(torch.zeros(1, 3, 224, 224))
    assert (size, round(sigma), jitter) == (28, 10, 4)
    assert mask.sizes(torch.zeros(1, 1, 8, 8)) == (4, 1.5, 8 / 56)  # sub-pixel jitter
    assert mask.mask_sigma((224, 224), 28) == 2 and mask.mask_sigma((8, 8), 4) == 0.5
    assert mask.mask_sigma((4, 4), 4) == 0
    # weights per element: the paper's at 28×28, scaled by the area below
    assert mask.weights(28) == pytest.approx((4e-4, 1e-2))
    assert mask.weights(4) == pytest.approx((4e-4 * 49, 1e-2 * 49))
    assert Mask(scale_weights=False).weights(4) == pytest.approx((4e-4, 1e-2))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps must be ≥ 1"),
        ({"steps": -3}, "steps"),
        ({"steps": 2.5}, "steps must be an int"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"l1": -1e-4}, "l1"),
        ({"tv": float("inf")}, "tv"),
        ({"tv_beta": 0.5}, "tv_beta"),
        ({"mask_size": 0}, "mask_size"),
        ({"blur_sigma": -1.0}, "blur_sigma"),
        ({"mask_blur": -1.0}, "mask_blur"),
        ({"jitter": -1}, "jitter"),
        ({"init": 1.5}, "init"),
        ({"score": "loss"}, "score"),
        ({"min_drop": 2.0}, "min_drop"),
        ({"min_deletion": -0.1}, "min_deletion"),
        ({"seed": -1}, "seed"),
        ({"scale_weights": 1}, "scale_weights"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Mask(**kwargs)


def test_optimize_bad_arguments(digits_small, batch):
    x, y = batch
    mask = Mask(steps=2)
    with pytest.raises(ValueError, match="init must have shape"):
        mask.optimize(digits_small, x, y, init=torch.ones(8, 1, 2, 2))
    with pytest.raises(ValueError, match="optimizer"):
        mask.optimize(digits_small, x, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="steps"):
        mask.optimize(digits_small, x, y, steps=-1)


def test_upsample_operator_is_interpolate_then_blur():
    m = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    for out, sigma in [(8, 0.5), (13, 1.3), (4, 0.0)]:
        a = upsample_operator(4, out, sigma, dtype=m.dtype, device="cpu")
        expected = gaussian_blur(resize_maps(m, (out, out)), sigma)
        torch.testing.assert_close(a @ m @ a.T, expected)
        torch.testing.assert_close(a.sum(1), torch.ones(out, dtype=m.dtype))  # keeps constants


def test_shift_moves_the_image_not_the_mask():
    x = torch.rand(2, 3, 7, 7)
    padded = F.pad(x, (3,) * 4, mode="replicate")
    out = shift_images(padded, 3, (1.0, -2.0), (7, 7))
    torch.testing.assert_close(out[..., 1:, :5], torch.roll(x, (1, -2), (2, 3))[..., 1:, :5])
    assert torch.equal(out[..., 0, :], out[..., 1, :])  # replicated border, not wrapped
    half = shift_images(padded, 3, (0.25, 0.0), (7, 7))
    torch.testing.assert_close(half, 0.75 * x + 0.25 * shift_images(padded, 3, (1.0, 0.0), (7, 7)))
    assert torch.equal(shift_images(padded, 3, (0.0, 0.0), (7, 7)), x)
    # in the objective the jitter moves x and its reference under the fixed mask
    mask = Mask(jitter=2)
    shifts = mask.shifts(50, 2.0)
    assert len(shifts) == 50 and all(abs(a) <= 2 and abs(b) <= 2 for a, b in shifts)
    assert len(set(shifts)) == 50 and shifts == Mask(jitter=2).shifts(50, 2.0)


def test_pure_pieces():
    x = torch.rand(2, 3, 9, 9)
    blurred = gaussian_blur(x, 1.0)
    assert blurred.shape == x.shape
    torch.testing.assert_close(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), rtol=0.1, atol=0.05)
    const = torch.full((1, 1, 6, 6), 0.3)
    torch.testing.assert_close(gaussian_blur(const, 2.0), const)
    assert torch.equal(total_variation(const), torch.zeros(1))
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1
    # Σ_u ‖∇m(u)‖_β^β: 4 rows with one unit jump each
    torch.testing.assert_close(total_variation(step, beta=1.0), torch.tensor([4.0]))
    torch.testing.assert_close(total_variation(step * 0.5, beta=3.0), torch.tensor([0.5]))


def test_batched_equals_per_image(digits_small, batch):
    x, y = batch
    mask = Mask(steps=60, jitter=0.7, seed=3)
    together = mask.optimize(digits_small, x, y)
    alone = torch.cat(
        [mask.optimize(digits_small, x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    )
    torch.testing.assert_close(together, alone, rtol=0, atol=2e-3)
    with quiet():
        maps = mask(digits_small, x[:4], y[:4])
        found = mask.last_result.found
        single = [mask(digits_small, x[i : i + 1], y[i : i + 1]) for i in range(4)]
    torch.testing.assert_close(maps, torch.cat(single), rtol=0, atol=5e-3)
    assert found.any()


def test_same_seed_same_masks_different_seed_differs(digits_small, batch):
    x, y = batch
    a = Mask(steps=20, jitter=1, seed=0).optimize(digits_small, x, y)
    assert torch.equal(a, Mask(steps=20, jitter=1, seed=0).optimize(digits_small, x, y))
    assert not torch.equal(a, Mask(steps=20, jitter=1, seed=1).optimize(digits_small, x, y))


def test_maps_are_informative_on_a_trained_model(digits_small, batch):
    """The paper's question: deleting the map's top region must hurt the class far more than
    deleting as many random pixels; the record agrees with a recomputation."""
    x, _ = batch
    with torch.no_grad():
        y = digits_small(x).argmax(1)  # explain the model's decisions
    mask = Mask()
    with quiet():
        maps = mask(digits_small, x)
    r = mask.last_result
    assert isinstance(r, MaskResult) and r.found.sum() >= 5
    ref = mask.reference(x, r.perturbation)  # each image's own (blur, else constant or noise)
    with torch.no_grad():
        keep = mask.upsample(r.mask, (8, 8))
        p_after = digits_small(x * keep + ref * (1 - keep)).softmax(1)[torch.arange(8), y]
        p_before = digits_small(x).softmax(1)[torch.arange(8), y]
    torch.testing.assert_close(p_after, r.p_c_after)
    torch.testing.assert_close(p_before, r.p_c_before)
    assert (r.p_c_after <= r.p_c_before - mask.min_drop)[r.found].all()
    assert (r.contrast >= mask.min_deletion)[r.found].all()
    assert r.area[r.found].mean() < 0.9  # a region, not everything
    # deletion of the top 25 % pixels of the map vs 25 % random pixels
    k = 16
    top = maps.flatten(1).topk(k, dim=1).indices
    g = torch.Generator().manual_seed(0)
    rnd = torch.rand(8, 64, generator=g).topk(k, dim=1).indices

    def p_deleting(idx):
        keep = torch.ones(8, 64).scatter_(1, idx, 0.0).view(8, 1, 8, 8)
        with torch.no_grad():
            return digits_small(x * keep + ref * (1 - keep)).softmax(1)[torch.arange(8), y]

    f = r.found
    assert p_deleting(top)[f].mean() < p_deleting(rnd)[f].mean() - 0.2
    # the failed maps are zeros, not stretched noise
    assert torch.equal(maps[~f], torch.zeros_like(maps[~f]))
    assert (maps[f].flatten(1).amax(1) == 1).all()


def test_failure_is_flagged_and_warned(digits_small):
    # a constant image equals its blurred reference: no deletion can change anything
    x = torch.full((2, 1, 8, 8), 0.4)
    x[1] = torch.linspace(0, 1, 64).view(8, 8)
    mask = Mask(steps=30)
    with pytest.warns(
        MaskWarning,
        match=r"no deletion for \d of 2 images.*#0: every reference tried \(blur, constant, noise\)",
    ):
        maps = mask(digits_small, x)
    r = mask.last_result
    assert not r.found[0] and r.reference_is_target[0]
    assert torch.equal(maps[0], torch.zeros_like(maps[0]))
    reasons = r.reasons(mask.min_drop, mask.min_deletion)
    assert "is classified as the class" in reasons[0]
    blur_only = Mask(steps=30, perturbation="blur")
    with quiet():
        blur_only(digits_small, x)
    assert "blur reference already classified" in blur_only.last_result.reasons(0.1, 0.1)[0]
    assert all((why == "") == bool(ok) for why, ok in zip(reasons, r.found, strict=True))
    with quiet():
        raw = mask(digits_small, x, raw=True)  # raw keeps the optimized values (no zeroing)
    assert raw.shape == (2, 1, 8, 8)


def test_start_at_one_is_stuck_start_at_zero_is_not(digits_small, batch):
    """The measured reason for m₀ = 0: from m = 1 the saturated softmax gives the mask almost
    no gradient, and the maps of confident digits stay constant."""
    x, y = batch
    with quiet():
        stuck = Mask(steps=100, init=1.0).explain(digits_small, x, y)
        moving = Mask(steps=100).explain(digits_small, x, y)
    assert moving.found.sum() > stuck.found.sum()
    assert (stuck.deletion < 0.1).sum() >= 3


def test_warm_start_and_unrolled_gradient(digits_small, batch):
    x, y = batch
    grads = [None if p.grad is None else p.grad.clone() for p in digits_small.parameters()]
    mask = Mask(steps=3)
    m0 = mask.optimize(digits_small, x, y, steps=10)
    m1 = mask.optimize(digits_small, x, y, init=m0, steps=0)
    assert torch.equal(m0, m1)
    for optimizer in ("adam", "sgd"):
        xg = x.clone().requires_grad_(True)
        m = mask.optimize(digits_small, xg, y, init=m0, create_graph=True, optimizer=optimizer)
        (g,) = torch.autograd.grad(mask.mask_to_map(m, (8, 8)).sum(), xg)
        assert torch.isfinite(g).all() and g.abs().max() > 0
    # detached and unrolled runs agree
    unrolled = mask.optimize(digits_small, x.clone().requires_grad_(True), y, create_graph=True)
    torch.testing.assert_close(unrolled.detach(), mask.optimize(digits_small, x, y))
    # the model's parameters' .grad are left as they were
    for p, before in zip(digits_small.parameters(), grads, strict=True):
        assert (p.grad is None) if before is None else torch.equal(p.grad, before)


@pytest.mark.parametrize("score", ["prob", "logit"])
def test_objective_is_the_papers(digits_small, batch, score):
    x, y = batch
    mask = Mask(score=score)
    s, sigma, _ = mask.sizes(x)
    m = torch.rand(8, 1, s, s, generator=torch.Generator().manual_seed(0))
    ref = gaussian_blur(x, sigma)
    value = mask.objective(digits_small, x, ref, m, y, shift=(0.5, -1.0))
    padded = F.pad(torch.cat([x, ref], 1), (3,) * 4, mode="replicate")
    moved = shift_images(padded, 3, (0.5, -1.0), (8, 8))
    keep = mask.upsample(m, (8, 8))
    with torch.no_grad():
        logits = digits_small(moved[:, :1] * keep + moved[:, 1:] * (1 - keep))
    f = logits.softmax(1) if score == "prob" else logits
    l1, tv = mask.weights(s)
    expected = (
        f[torch.arange(8), y]
        + l1 * (1 - m).abs().sum(dim=(1, 2, 3))
        + tv * total_variation(m, mask.tv_beta)
    )
    torch.testing.assert_close(value.detach(), expected)


def test_each_perturbation_is_the_reference_fong_and_vedaldi_describe() -> None:
    from underfire.interpreters.mask_reference import reference_image

    x = torch.rand(3, 3, 8, 8)
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(reference_image(x, "constant", 1.5, 0), mean.expand_as(x))
    torch.testing.assert_close(reference_image(x, "blur", 1.5, 0), gaussian_blur(x, 1.5))
    noise = reference_image(x, "noise", 1.5, 0)
    assert torch.equal(noise, reference_image(x, "noise", 1.5, 0))  # seeded
    assert not torch.equal(noise, reference_image(x, "noise", 1.5, 1))
    # one noise pattern, scaled by each image's own spread: batch-mates do not matter
    assert torch.equal(reference_image(x[1:2], "noise", 1.5, 0), noise[1:2])
    assert 0 <= noise.min() and noise.max() <= 1
    with pytest.raises(ValueError, match="perturbation must be one of"):
        Mask(perturbation="zeros")


def test_auto_falls_back_where_the_blurred_image_keeps_the_class() -> None:
    """A model that says "smooth" (class 0) unless neighbouring pixels differ: the blurred and
    the constant versions of a smooth ramp stay smooth, so neither reference can delete
    anything; the noise reference is rough, and auto uses it and finds deletions."""

    class Roughness(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rough = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
            return torch.stack([torch.ones_like(rough), 30 * (rough - 0.05)], 1)

    x = torch.linspace(0, 1, 64).view(1, 1, 8, 8).repeat(3, 1, 1, 1)
    x[1] = x[1].flip(-1)
    x[2] = 0.5 * x[2] + 0.25
    model = Roughness()
    y = model(x).argmax(1)
    assert (y == 0).all()
    blur, auto = Mask(steps=60, perturbation="blur"), Mask(steps=60)
    with quiet():
        blur.explain(model, x, y)
        r = auto.explain(model, x, y)
    assert blur.last_result.reference_is_target.all() and not blur.last_result.found.any()
    assert r.perturbations() == ["noise"] * 3
    assert torch.equal(auto.choose(model, x, y), torch.full((3,), PERTURBATIONS.index("noise")))
    assert not r.reference_is_target.any() and r.found[:2].all()
    # the low-contrast ramp: only deleting nearly everything makes it rough enough, and a
    # nearly constant map is flagged, not shown
    assert not r.found[2] and "nearly constant" in r.reasons(0.1, 0.1)[2]


def test_auto_solves_again_with_the_constant_only_the_maps_the_blur_left_blank() -> None:
    """A model that reads the mean of the first column, with its threshold between an image
    and its blurred version. On a thin line the blur erases that column and MASK finds the
    line; on a wide bar the blurred bar is barely below the threshold (so the blurred reference
    is chosen: it is not classified as the class) yet no deletion lowers p_c by min_drop, and
    the map is blank until the bar is solved again against the constant reference.

    Fails if ``Mask.solve`` stops solving the blank maps again, or solves the wrong samples
    again (the line's blur map replaced, or the bar's constant mask put in another place)."""

    class FirstColumn(torch.nn.Module):
        def __init__(self, threshold: float) -> None:
            super().__init__()
            self.threshold = threshold

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = 10 * (x[..., :, 0].mean(dim=(1, 2)) - self.threshold)
            return torch.stack([z, torch.zeros_like(z)], 1)

    x = torch.zeros(4, 1, 8, 8)
    x[0, ..., :1] = 1  # a line on the first column
    x[1, ..., :4] = 1  # a bar over the left half
    x[2, ..., :1] = x[2, ..., 7] = 1  # the line, and one far from the column read
    x[3, ..., :4], x[3, ..., 7] = 1, 0.6  # the bar, and a dimmer far line
    bar = torch.tensor([False, True, False, True])
    auto = Mask(steps=100)
    blurred = auto.reference(x, torch.zeros(4, dtype=torch.long))[..., :, 0].mean(dim=(1, 2))
    model = FirstColumn((1 + float(blurred[bar].max())) / 2)
    y = torch.zeros(4, dtype=torch.long)
    assert (model(x).argmax(1) == y).all()
    assert torch.equal(auto.choose(model, x, y), torch.zeros(4, dtype=torch.long))  # all blur
    solved = {}
    for kind in ("blur", "constant"):
        alone = Mask(steps=100, perturbation=kind)
        with quiet():
            alone(model, x, y)
        solved[kind] = alone.last_result
    assert torch.equal(solved["blur"].found, ~bar) and solved["constant"].found.all()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = auto(model, x, y)
    r = auto.last_result
    warned = [str(w.message) for w in caught if issubclass(w.category, MaskWarning)]
    assert not warned, warned
    assert r.found.all() and (maps.flatten(1).amax(1) == 1).all()  # no blank map left
    assert r.perturbations() == ["blur", "constant", "blur", "constant"]
    assert r.tried == ("blur", "constant", "noise")
    torch.testing.assert_close(r.mask[~bar], solved["blur"].mask[~bar])
    torch.testing.assert_close(r.mask[bar], solved["constant"].mask[bar])


def test_the_authors_mask_settings_per_image_size() -> None:
    cifar = Mask.authors(32, steps=5)
    assert (cifar.mask_size, cifar.lr, cifar.l1, cifar.tv) == (8, 0.05, 1e-3, 0.1)
    assert (cifar.blur_sigma, cifar.mask_blur, cifar.init, cifar.scale_weights) == (
        1.1,
        0.8,
        0.5,
        False,
    )
    assert cifar.weights(8) == (1e-3, 0.1)  # per element of the coarse mask, as theirs
    imagenet = Mask.authors(224)
    assert (imagenet.mask_size, imagenet.lr, imagenet.l1, imagenet.tv, imagenet.steps) == (
        28,
        0.1,
        1e-4,
        1e-2,
        300,
    )
    assert (imagenet.blur_sigma, imagenet.mask_blur) == (3.5, 2.0)
    digits = Mask.authors(8, steps=7)
    assert digits.init == Mask().init and digits.steps == 7
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    with quiet():
        maps = cifar(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    assert maps.shape == (2, 1, 32, 32) and cifar.last_result.mask.shape == (2, 1, 8, 8)


def test_mask_finds_a_deletion_for_nine_in_ten_digits_a_model_never_seen_classifies(
    two_conv_digits, digits_splits
) -> None:
    """Issue 24's target: on a digits CNN the project never saw, MASK explains at least 90 %
    of the correctly classified test digits (measured: 97 of 98 among the first 100). With
    the blurred reference alone about half stay blank (measured 48 of 98) because the blurred
    digit keeps its class; the constant and noise references are what close the gap.

    Fails if the fallback references stop being tried, or MASK's settings stop finding
    deletions on a real model."""
    x, y = collect_data(digits_splits["test"], 100)
    with torch.no_grad():
        right = two_conv_digits(x).argmax(1) == y
    x, y = x[right], y[right]
    assert x.shape[0] >= 90
    auto, blur = Mask(), Mask(perturbation="blur")
    with quiet():
        auto.explain(two_conv_digits, x, y)
        blur.explain(two_conv_digits, x, y)
    found = auto.last_result.found.float().mean()
    assert found >= 0.9
    assert blur.last_result.found.float().mean() < found - 0.2  # what the fallbacks add
    assert set(auto.last_result.perturbations()) > {"blur"}
