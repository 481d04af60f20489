"""MASK (Fong & Vedaldi 2017): batched optimization equals per-image optimization, and the
masks do what the objective asks on a trained model."""

from __future__ import annotations

import pytest
import torch

from underfire.interpreters import Mask, gaussian_blur, total_variation
from underfire.interpreters.mask import default_mask_size


@pytest.fixture(scope="module")
def batch(digits_splits):
    return digits_splits["test"].x[:8], digits_splits["test"].y[:8]


def test_sizes_adapt_to_input():
    assert default_mask_size(224) == 28 and default_mask_size(28) == 7 and default_mask_size(8) == 4
    assert default_mask_size(3) == 3
    size, sigma, jitter = Mask().sizes(torch.zeros(1, 3, 224, 224))
    assert (size, round(sigma), jitter) == (28, 10, 4)
    assert Mask().sizes(torch.zeros(1, 1, 8, 8)) == (4, 1.5, 1)


def test_batched_equals_per_image(digits_small, batch):
    x, y = batch
    mask = Mask(steps=60, jitter=1, seed=3)
    together = mask.optimize(digits_small, x, y)
    alone = torch.cat(
        [mask.optimize(digits_small, x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    )
    torch.testing.assert_close(together, alone, rtol=0, atol=2e-3)
    maps = mask(digits_small, x, y)
    torch.testing.assert_close(
        maps,
        torch.cat([mask(digits_small, x[i : i + 1], y[i : i + 1]) for i in range(len(x))]),
        rtol=0,
        atol=5e-3,
    )


def test_same_seed_same_masks_different_seed_differs(digits_small, batch):
    x, y = batch
    a = Mask(steps=20, jitter=1, seed=0).optimize(digits_small, x, y)
    assert torch.equal(a, Mask(steps=20, jitter=1, seed=0).optimize(digits_small, x, y))
    assert not torch.equal(a, Mask(steps=20, jitter=1, seed=1).optimize(digits_small, x, y))


def test_deletion_lowers_class_probability(digits_small, batch):
    x, y = batch
    mask = Mask(steps=150)
    r = mask.explain(digits_small, x, y)
    m = r.mask
    _, sigma, _ = mask.sizes(x)
    ref = gaussian_blur(x, sigma)
    with torch.no_grad():
        p_clean = digits_small(x).softmax(1).gather(1, y[:, None]).squeeze(1)
        keep = mask.upsample(m, (8, 8))
        p_masked = digits_small(x * keep + ref * (1 - keep)).softmax(1).gather(1, y[:, None])
    torch.testing.assert_close(p_masked.squeeze(1), r.p_c_after)
    torch.testing.assert_close(p_clean, r.p_c_before)
    assert (r.p_c_after < r.p_c_before - 0.1)[r.found].all()
    assert r.found.float().mean() >= 0.5
    assert m.min() >= 0 and m.max() <= 1


def test_warm_start_and_unrolled_gradient(digits_small, batch):
    x, y = batch
    mask = Mask(steps=3)
    m0 = mask.optimize(digits_small, x, y, steps=10)
    m1 = mask.optimize(digits_small, x, y, init=m0, steps=0)
    assert torch.equal(m0, m1)
    xg = x.clone().requires_grad_(True)
    m = mask.optimize(digits_small, xg, y, init=m0, create_graph=True)
    (g,) = torch.autograd.grad(m.sum(), xg)
    assert torch.isfinite(g).all() and g.abs().max() > 0
    with pytest.raises(ValueError, match="init must have shape"):
        mask.optimize(digits_small, x, y, init=m0[:, :, :2])


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
    torch.testing.assert_close(total_variation(step, beta=1.0), torch.tensor([4.0]))
    with pytest.raises(ValueError):
        Mask(score="loss")
