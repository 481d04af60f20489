"""MASK against a literal float64 implementation of Fong & Vedaldi (2017), and the unrolled
(differentiable) optimization against finite differences.

The reference below is written plainly, one image at a time, with loops over pixels and
``torch.optim.Adam``: it shares no code with ``underfire.interpreters.mask`` except the list
of jitter shifts (drawn from the seed) and the default sizes.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from underfire.interpreters.mask import Mask, MaskWarning

# -- the literal reference -------------------------------------------------------------------


def gauss_weights(sigma: float) -> list[float]:
    """1-D Gaussian taps for offsets −r..r, r = ⌈3σ⌉ (at least 1), normalized to sum 1."""
    r = max(1, math.ceil(3 * sigma))
    w = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-r, r + 1)]
    return [v / sum(w) for v in w]


def clamp(i: int, n: int) -> int:
    return min(max(i, 0), n - 1)


def blur_image(img: list[list[float]], sigma: float) -> list[list[float]]:
    """2-D Gaussian blur, border pixels replicated."""
    h, w = len(img), len(img[0])
    g = gauss_weights(sigma)
    r = len(g) // 2
    return [
        [
            sum(
                g[a + r] * g[b + r] * img[clamp(i + a, h)][clamp(j + b, w)]
                for a in range(-r, r + 1)
                for b in range(-r, r + 1)
            )
            for j in range(w)
        ]
        for i in range(h)
    ]


def bilinear_1d(i: int, out: int, size: int) -> list[tuple[int, float]]:
    """Coarse taps of output pixel i when upsampling ``size`` → ``out`` (half-pixel centers)."""
    src = max((i + 0.5) * size / out - 0.5, 0.0)
    i0 = int(math.floor(src))
    i1 = min(i0 + 1, size - 1)
    lam = src - i0
    return [(i0, 1 - lam), (i1, lam)]


def upsample_matrix(s: int, h: int, w: int, sigma_m: float) -> torch.Tensor:
    """(h·w, s·s) weights of 'bilinear upsampling, then Gaussian blur σ_m' built pixel by pixel."""
    up = torch.zeros(h * w, s * s, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            for ki, wi in bilinear_1d(i, h, s):
                for kj, wj in bilinear_1d(j, w, s):
                    up[i * w + j, ki * s + kj] += wi * wj
    if sigma_m <= 0:
        return up
    g = gauss_weights(sigma_m)
    r = len(g) // 2
    out = torch.zeros_like(up)
    for i in range(h):
        for j in range(w):
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    out[i * w + j] += (
                        g[a + r] * g[b + r] * up[clamp(i + a, h) * w + clamp(j + b, w)]
                    )
    return out


def shifted(img: list[list[float]], dy: float, dx: float) -> list[list[float]]:
    """The image translated by (dy, dx): out(u) = x(u − τ), bilinear, border replicated."""
    h, w = len(img), len(img[0])

    def sample(p: float, q: float) -> float:
        p0, q0 = math.floor(p), math.floor(q)
        fp, fq = p - p0, q - q0
        return sum(
            wp * wq * img[clamp(p0 + a, h)][clamp(q0 + b, w)]
            for a, wp in ((0, 1 - fp), (1, fp))
            for b, wq in ((0, 1 - fq), (1, fq))
        )

    return [[sample(i - dy, j - dx) for j in range(w)] for i in range(h)]


def literal_mask(model, image, c, *, steps, lr, l1, tv, beta, s, sigma, sigma_m, shifts, init):
    """Fong & Vedaldi's deletion game for one (1, H, W) image, as the paper states it:
    min_m p_c(Φ(x(·−τ), M)) + λ₁ Σ|1 − m| + λ₂ Σ_u (|∂_h m(u)|^β + |∂_w m(u)|^β), Adam, clamp."""
    _, h, w = image.shape
    img = image[0].tolist()
    ref = blur_image(img, sigma)
    k = upsample_matrix(s, h, w, sigma_m)
    m = torch.full((s, s), init, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([m], lr=lr)
    for t in range(steps):
        dy, dx = shifts[t]
        xs = torch.tensor(shifted(img, dy, dx), dtype=torch.float64)
        rs = torch.tensor(shifted(ref, dy, dx), dtype=torch.float64)
        big = (k @ m.reshape(-1)).reshape(h, w)
        phi = xs * big + rs * (1 - big)
        p_c = torch.softmax(model(phi.view(1, 1, h, w)), dim=1)[0, c]
        area = sum((1 - m[i, j]).abs() for i in range(s) for j in range(s))
        smooth = sum((m[i + 1, j] - m[i, j]).abs() ** beta for i in range(s - 1) for j in range(s))
        smooth = smooth + sum(
            (m[i, j + 1] - m[i, j]).abs() ** beta for i in range(s) for j in range(s - 1)
        )
        loss = p_c + l1 * area + tv * smooth
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            m.clamp_(0, 1)
    with torch.no_grad():
        return 1 - (k @ m.reshape(-1)).reshape(1, h, w)


@pytest.mark.slow
def test_batched_matches_literal_paper_implementation(digits_small, digits_splits):
    model = copy.deepcopy(digits_small).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = digits_splits["test"].x[:4].double()
    with torch.no_grad():
        c = model(x).argmax(1)
    mask = Mask(steps=100, seed=1, perturbation="blur")  # the literal code blurs
    s, sigma, jitter = mask.sizes(x)
    l1, tv = mask.weights(s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskWarning)
        ours = mask(model, x, c, raw=True)
    varied = mask.last_result.contrast >= 0.1  # ranks of a constant map are noise
    assert varied.sum() >= 2
    shifts = mask.shifts(mask.steps, jitter)
    for i in range(len(x)):
        ref = literal_mask(
            model, x[i], int(c[i]), steps=mask.steps, lr=mask.lr, l1=l1, tv=tv,
            beta=mask.tv_beta, s=s, sigma=sigma, sigma_m=mask.mask_sigma((8, 8), s),
            shifts=shifts, init=mask.init,
        )  # fmt: skip
        if varied[i]:
            rho = spearmanr(ref.flatten().numpy(), ours[i].flatten().numpy()).statistic
            assert rho >= 0.99, (i, rho)
        # float64 on both sides: the same trajectory up to rounding (measured ~1e-16)
        assert (ref - ours[i]).abs().max() < 1e-8


# -- the unrolled optimization against finite differences ------------------------------------


class TinySmooth(nn.Module):
    """conv → tanh → linear on 1×4×4 inputs, 3 classes, float64: smooth everywhere."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(48, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x * 4 - 2)).flatten(1))


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_unrolled_gradient_matches_finite_differences(optimizer):
    model = TinySmooth().double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x0 = 0.1 + 0.8 * torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 2])
    weights = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64)
    # 2×2 mask upsampled ×2 and blurred, sub-pixel jitter, 3 steps from the interior
    mask = Mask(steps=3, mask_size=2, lr=0.05, jitter=0.6, seed=2, perturbation="blur")
    init = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        m = mask.optimize(
            model, x, target, init=init, create_graph=True, optimizer=optimizer, sgd_lr=0.5
        )
        assert ((m > 0) & (m < 1)).all()  # no clamping: the map is smooth in x here
        return (weights * mask.mask_to_map(m, (4, 4))).sum()

    x = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x), x)
    h = 1e-6
    fd = torch.zeros_like(x0)
    for idx in range(x0.numel()):
        e = torch.zeros_like(x0).view(-1)
        e[idx] = h
        e = e.view_as(x0)
        with torch.no_grad():
            fd.view(-1)[idx] = (loss(x0 + e) - loss(x0 - e)) / (2 * h)
    assert grad.abs().max() > 1e-6  # the unrolled steps carry a gradient to x
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)
