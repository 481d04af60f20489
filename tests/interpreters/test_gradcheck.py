"""``torch.autograd.gradcheck`` (float64) of every differentiable map w.r.t. the input.

The model (conftest ``TinyGapNet``: conv → tanh → conv → ReLU → GAP → FC) has its only ReLU
after the target layer, so with the smooth ReLU on, the smooth backward h(z) enters gradient
maps only as a factor and autograd's second derivative (through h') is the true derivative of
the map as computed; finite differences can check it. In a deeper ReLU network the forward
path through earlier ReLUs is differentiated with h instead of the exact step, i.e. the
second-order gradient is a surrogate (that is its purpose), and gradcheck would not apply.
MASK and RTS are checked with the plain ReLU: their maps are first-order in the model.
"""

from __future__ import annotations

import pytest
import torch

from underfire.interpreters import (
    CAM,
    RTS,
    Ensemble,
    GradCAM,
    IntegratedGradients,
    Mask,
    Saliency,
    SmoothGrad,
    smooth_relu,
)
from underfire.interpreters.rts import MaskingNetwork

CASES = {
    "grad": (lambda: Saliency(), True),
    "smoothgrad": (lambda: SmoothGrad(samples=3, stdev=0.1, seed=0), True),
    "ig": (lambda: IntegratedGradients(steps=4), True),
    "cam": (lambda: CAM(), False),
    "gradcam": (lambda: GradCAM(), True),
    "mask": (lambda: Mask(steps=3, lr=0.05), False),
    "ensemble": (lambda: Ensemble([Saliency(), GradCAM()]), True),
}


def _rts(model):
    torch.manual_seed(0)
    net = (
        MaskingNetwork(feat_channels=4, num_classes=3, feat_size=(5, 5), input_size=(5, 5), width=4)
        .double()
        .eval()
    )
    return RTS(net)


def _x():
    g = torch.Generator().manual_seed(0)
    return (0.1 + 0.8 * torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64)).requires_grad_(
        True
    )


@pytest.mark.parametrize("name", [*CASES, "rts"])
@pytest.mark.parametrize("raw", [False, True])
def test_map_gradcheck(tiny64, name, raw):
    if name == "rts":
        interp, smooth = _rts(tiny64), False
    else:
        factory, smooth = CASES[name]
        interp = factory()
    target = torch.tensor([0, 2])
    x = _x()

    def fn(inp):
        return interp(tiny64, inp, target, create_graph=True, raw=raw)

    if smooth:
        with smooth_relu(tiny64):
            assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)
    else:
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_grad_map_gradient_is_nonzero_with_smooth_relu(tiny64):
    x = _x()
    with smooth_relu(tiny64):
        m = Saliency()(tiny64, x, torch.tensor([0, 1]), create_graph=True)
        (g,) = torch.autograd.grad(m.pow(2).sum(), x)
    assert g.abs().max() > 0


def test_create_graph_reaches_parameters(tiny64):
    # Training objectives differentiate maps w.r.t. the weights (double backprop).
    x = _x().detach()
    m = GradCAM()(tiny64, x, torch.tensor([0, 1]), create_graph=True, raw=True)
    grads = torch.autograd.grad(m.sum(), [p for p in tiny64.parameters()], allow_unused=True)
    assert any(g is not None and g.abs().max() > 0 for g in grads)
    assert all(p.grad is None for p in tiny64.parameters())
