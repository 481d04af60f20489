"""core.autograd.conv: frozen convolutions whose double backward skips the weight term.

Values and derivatives of every order must be PyTorch's own (float64, tight tolerances),
checked numerically with gradcheck/gradgradcheck, for 1-D/2-D/3-D layers with stride,
padding, dilation, groups and a non-zero padding mode.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.core.autograd import fast_conv_double_backward
from underfire.core.autograd.conv import _FrozenConv

LAYERS = {
    "conv1d": lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1),
    "conv2d": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2),
    "conv2d-1x1-stride2": lambda: nn.Conv2d(3, 5, 1, stride=2, bias=False),
    "conv2d-dilated-reflect": lambda: nn.Conv2d(
        2, 3, 3, padding=2, dilation=2, padding_mode="reflect"
    ),
    "conv3d": lambda: nn.Conv3d(2, 3, 2, stride=(1, 2, 1), padding=(1, 0, 1)),
}
SHAPES = {
    "conv1d": (2, 3, 9),
    "conv2d": (2, 4, 7, 6),
    "conv2d-1x1-stride2": (2, 3, 6, 6),
    "conv2d-dilated-reflect": (2, 2, 6, 5),
    "conv3d": (2, 2, 4, 5, 3),
}


def _frozen(name: str) -> nn.Module:
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    for p in layer.parameters():
        p.requires_grad_(False)
    return layer


def _net(layer: nn.Module) -> nn.Module:
    # a smooth nonlinearity between two uses of the layer's output, so that second and third
    # derivatives are not zero
    return nn.Sequential(layer, nn.Tanh())


def _derivatives(net: nn.Module, x: torch.Tensor, w: torch.Tensor) -> list[torch.Tensor]:
    xr = x.detach().requires_grad_(True)
    out = net(xr)
    (g,) = torch.autograd.grad((out * w).sum(), xr, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), xr, create_graph=True)
    (ggg,) = torch.autograd.grad(gg.sin().sum(), xr)
    return [out.detach(), g.detach(), gg.detach(), ggg]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_values_and_derivatives_match_pytorch(name):
    layer = _frozen(name)
    net = _net(layer)
    x = torch.randn(*SHAPES[name], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.randn_like(net(x))
    ref = _derivatives(net, x, w)
    with fast_conv_double_backward(net):
        assert "forward" in layer.__dict__
        xr = x.detach().requires_grad_(True)
        assert isinstance(layer(xr).grad_fn, _FrozenConv._backward_cls)  # the patch is active
        fast = _derivatives(net, x, w)
    assert "forward" not in layer.__dict__  # restored
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["conv2d", "conv2d-dilated-reflect", "conv3d"])
def test_gradcheck_and_gradgradcheck(name):
    layer = _frozen(name)
    net = _net(layer)
    x = torch.randn(*SHAPES[name], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w = torch.randn_like(net(x))

    def input_gradient(xi):
        (g,) = torch.autograd.grad((net(xi) * w).sum(), xi, create_graph=True)
        return g

    with fast_conv_double_backward(net):
        xr = x.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(input_gradient, (xr,))
        assert torch.autograd.gradgradcheck(input_gradient, (xr,))


def test_trainable_layers_and_no_grad_calls_run_pytorchs_convolution():
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, padding=1).double()  # weight requires grad
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    with fast_conv_double_backward(layer):
        out = layer(x)
        assert not isinstance(out.grad_fn, _FrozenConv._backward_cls)
        out.pow(2).sum().backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        layer.requires_grad_(False)
        with torch.no_grad():
            assert layer(x).grad_fn is None
    assert "forward" not in layer.__dict__


def test_restored_on_error_and_string_padding_untouched():
    layer = nn.Conv2d(1, 1, 3, padding="same")
    net = nn.Sequential(nn.Conv2d(1, 1, 3), layer)
    with pytest.raises(RuntimeError, match="boom"), fast_conv_double_backward(net):
        assert "forward" in net[0].__dict__ and "forward" not in layer.__dict__
        raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in net.modules())
