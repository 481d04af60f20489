"""ADV² (Zhang et al. 2020): contract, errors, schedule, and the autograd pieces it runs on."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from underfire.attacks import ADV2, PGD
from underfire.attacks.adv2 import (
    affine_batch_norm,
    attack_patches,
    joint_loss_gradient,
    map_distance,
    smoothed_cross_entropy,
)
from underfire.core.autograd.smooth_relu import (
    _h_and_slope,
    smooth_relu,
    smooth_relu_derivative,
    smooth_relu_function,
)
from underfire.core.registry import UnknownNameError
from underfire.interpreters import (
    CAM,
    RTS,
    Ensemble,
    GradCAM,
    IntegratedGradients,
    Interpreter,
    Mask,
    MaskingNetwork,
    Saliency,
    SmoothGrad,
)
from underfire.models import model_for_dataset

TAU = 1e-4
FAST = dict(preset="small", eps=0.1, step_size=0.02, warm_steps=2, steps=3, lam=1.0)


def _rts_for(model: nn.Module) -> RTS:
    torch.manual_seed(0)
    net = MaskingNetwork(
        feat_channels=64, num_classes=10, feat_size=(2, 2), input_size=(8, 8), width=8
    )
    return RTS(net.eval())


INTERPRETERS = {
    "grad": lambda m: Saliency(),
    "smoothgrad": lambda m: SmoothGrad(samples=3, seed=0),
    "ig": lambda m: IntegratedGradients(steps=4),
    "gradcam": lambda m: GradCAM(),
    "cam": lambda m: CAM(),
    "mask": lambda m: Mask(steps=5),
    "rts": _rts_for,
    "ensemble": lambda m: Ensemble(["grad", "gradcam"]),
}


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    arch = "resnet-small" if name == "cam" else "ross-cnn"
    kwargs = {"hidden": 16} if arch == "ross-cnn" else {}
    return model_for_dataset(arch, "digits", **kwargs).eval()


# ---------------------------------------------------------------------------- smooth ReLU


def test_smooth_relu_h_and_slope_match_the_formula():
    z = torch.cat(
        [
            torch.randn(5000, dtype=torch.float64) * 0.05,
            torch.randn(100, dtype=torch.float64) * 100,
            torch.tensor([0.0, -0.0, 1e-30, -1e-30, -1e10, 1e10], dtype=torch.float64),
        ]
    )
    h, slope = _h_and_slope(z, TAU)
    torch.testing.assert_close(h, smooth_relu_derivative(z, TAU), atol=1e-12, rtol=0)
    torch.testing.assert_close(slope, TAU * (z * z + TAU) ** -1.5)
    zr = z.detach().requires_grad_(True)
    (auto,) = torch.autograd.grad(smooth_relu_derivative(zr, TAU).sum(), zr)
    torch.testing.assert_close(slope, auto)  # h' is the derivative of h


def test_smooth_relu_gradcheck_and_gradgradcheck():
    # the first backward (g, z) ↦ g·h(z) is one Function with a closed-form backward: check it
    # and its own derivative numerically in float64, around the kink scale √τ
    z = (torch.randn(10, dtype=torch.float64) * 0.03).requires_grad_(True)
    g = torch.randn(10, dtype=torch.float64, requires_grad=True)
    # (the forward itself is not checked: its backward is a surrogate by design)

    def backward_of(g_, z_):
        out = smooth_relu_function(z_, TAU)
        return torch.autograd.grad(out, z_, g_, create_graph=True)[0]

    assert torch.autograd.gradcheck(backward_of, (g, z))
    assert torch.autograd.gradgradcheck(backward_of, (g, z))  # third order stays exact


def test_double_backward_through_a_network_matches_the_naive_formula():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    with smooth_relu(net):
        (g,) = torch.autograd.grad(net(x)[:, 0].sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
    # by hand: g = W2[0]·diag(h(z))·W1, ∂‖g‖²/∂x through h'(z)
    w1, b1, w2 = net[0].weight, net[0].bias, net[2].weight
    xr = x.detach().requires_grad_(True)
    z = xr @ w1.T + b1
    g_ref = (w2[0] * smooth_relu_derivative(z, TAU)) @ w1
    (gg_ref,) = torch.autograd.grad(g_ref.pow(2).sum(), xr)
    torch.testing.assert_close(g.detach(), g_ref.detach())
    torch.testing.assert_close(gg, gg_ref)


def test_affine_batch_norm_matches_eval_batch_norm():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).double()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    bn.eval()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    ref = bn(x)
    (g_ref,) = torch.autograd.grad(ref.pow(3).sum(), x)
    with affine_batch_norm(bn):
        out = bn(x)
        (g,) = torch.autograd.grad(out.pow(3).sum(), x)
    assert "forward" not in bn.__dict__  # restored
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g, g_ref)
    bn.train()
    with affine_batch_norm(bn):
        assert "forward" not in bn.__dict__  # training-mode layers are left alone


class _NaiveSmoothReLU(nn.Module):
    """The smooth ReLU written the plain way: backward g·h(z) in differentiable torch ops."""

    class _Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z.clamp_min(0)

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            return g * smooth_relu_derivative(z, TAU)

    def forward(self, z):
        return self._Fn.apply(z)


@pytest.mark.parametrize("interp", ["grad", "gradcam"])
def test_joint_loss_gradient_with_attack_patches_equals_the_plain_computation(interp):
    # the speed-ups (smooth ReLU as one Function with h cached, fused eval batch norm, frozen
    # convolutions without the weight term) must not change the ADV² step: float64, a model
    # with strided and 1×1 convolutions, batch norm with real statistics, max-pool, reused ReLU
    torch.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        relu,
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.BatchNorm2d(6),
        relu,
        nn.Conv2d(6, 6, 1, stride=2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).double()
    with torch.no_grad():
        model.train()
        model(torch.rand(16, 1, 8, 8, dtype=torch.float64))
    model.eval().requires_grad_(False)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 2, 4])
    interpreter = Saliency() if interp == "grad" else GradCAM(target_layer="3")
    target_map = torch.rand(
        3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )

    def step():
        return joint_loss_gradient(model, interpreter, x, t, target_map, 0.5)[0]

    with attack_patches(model, True):
        fast = step()
    assert not any("forward" in m.__dict__ for m in model.modules())
    naive = _NaiveSmoothReLU()
    model[2] = model[5] = naive
    plain = step()
    model[2] = model[5] = relu
    assert fast.abs().max() > 0
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------- pure pieces


def test_losses():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([1])
    plain = torch.nn.functional.cross_entropy(logits, t)
    torch.testing.assert_close(smoothed_cross_entropy(logits, t, 1.0)[0], plain)
    logp = logits.log_softmax(1)[0]
    expect = -(0.95 * logp[1] + 0.025 * logp[0] + 0.025 * logp[2])
    torch.testing.assert_close(smoothed_cross_entropy(logits, t, 0.95)[0], expect)
    a, b = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    b[1] = 0.5
    torch.testing.assert_close(map_distance(a, b, "sse"), torch.tensor([16.0, 4.0]))
    torch.testing.assert_close(map_distance(a, b, "mse"), torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(map_distance(a, b, "sse", pool=2), torch.tensor([4.0, 1.0]))


def test_schedules_and_presets():
    a = ADV2("grad", steps=(2, 3), lam=(0.1, 1.0))
    assert a.lambdas() == [0.1, 0.1, 1.0, 1.0, 1.0]
    assert ADV2("grad", steps=5, lam=(0.1, 1.0)).lambdas() == [0.1, 0.1, 0.1, 1.0, 1.0]
    lin = ADV2("cam", steps=4, lam=(5.0, 10.0), schedule="linear").lambdas()
    torch.testing.assert_close(torch.tensor(lin), torch.tensor([6.25, 7.5, 8.75, 10.0]))
    # the authors' settings (REFERENCE.md §3 / their public code) for ImageNet-size inputs
    g = ADV2("grad")
    assert (g.warm_steps, g.steps, g.lam, g.pool, g.kappa) == (
        300,
        (301, 201, 101, 101),
        (0.001, 0.004, 0.01, 0.05),
        4,
        0.8,
    )
    c = ADV2("gradcam")
    assert (c.warm_steps, c.steps, c.lam, c.schedule, c.distance) == (
        400,
        1200,
        (5.0, 10.0),
        "linear",
        "mse",
    )
    assert ADV2.for_interpreter("grad", image_size=8).preset == "small"
    assert ADV2.for_interpreter("grad", image_size=224).preset == "imagenet"
    assert json.loads(json.dumps(g.config()))["interpreter"] == "grad"


# ---------------------------------------------------------------------------- contract


@pytest.mark.filterwarnings("ignore::underfire.interpreters.mask.MaskWarning")
@pytest.mark.parametrize("name", list(INTERPRETERS))
def test_contract(name, batch):
    model = _model(name).train()  # the attack must use eval mode and restore train mode
    x, y = batch
    x_before = x.clone()
    sentinel = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = sentinel[n]
    first = next(iter(model.parameters()))
    first.requires_grad_(False)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    running = bn.running_mean.clone()
    relus = [m for m in model.modules() if type(m) is nn.ReLU]

    attack = ADV2(INTERPRETERS[name](model), **FAST)
    x_adv = attack(model, x, y, target="next")

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert torch.equal(x, x_before), "input mutated"
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(bn.running_mean, running), "BN statistics changed"
    for n, p in model.named_parameters():
        assert p.grad is sentinel[n] and bool((p.grad == 0.5).all()), f"{n}.grad changed"
        assert p.requires_grad == (p is not first)
    assert [m for m in model.modules() if type(m) is nn.ReLU] == relus  # no smooth ReLU left
    assert not any("forward" in m.__dict__ for m in model.modules())  # BN, conv patches removed
    r = attack.result
    assert r is not None
    for field in ("target", "prediction", "success", "confidence", "l1", "iou", "distance"):
        assert getattr(r, field).shape == (x.shape[0],), field
    torch.testing.assert_close(r.target, (y + 1) % 10)
    assert ((r.l1 >= 0) & (r.l1 <= 1) & (r.iou >= 0) & (r.iou <= 1)).all()
    summary = r.summary()
    assert set(summary) == {"n", "success_rate", "confidence", "confidence_successful", "l1", "iou"}
    hit = r.success
    assert summary["confidence_successful"] == (
        pytest.approx(float(r.confidence[hit].mean())) if hit.any() else None
    )


def test_batched_equals_per_sample(tiny_model, batch):
    model = tiny_model.double()
    x, y = batch[0].double(), batch[1]
    attack = ADV2("grad", **FAST)
    whole = attack(model, x, y, target="next")
    single = torch.cat(
        [attack(model, x[i : i + 1], y[i : i + 1], target="next") for i in range(len(x))]
    )
    torch.testing.assert_close(whole, single, atol=1e-6, rtol=0)


def test_auto_preset_follows_the_input_size(tiny_model, batch):
    x, y = batch
    a = ADV2("grad", eps=0.1, step_size=0.02, steps=3)
    assert a.preset == "auto" and a.warm_steps == 300  # before a call: the ImageNet values
    a(tiny_model, x, y, target="next")
    # as long as the PGD-100 baseline: ADV² reaches every target PGD reaches
    assert a.preset_ == "small" and a.warm_steps == 100 and a.lam == (0.05, 0.2, 1.0)
    assert a.steps == 3  # what the user set stays


def test_empty_batch_and_eps_zero(tiny_model, batch):
    x, y = batch
    empty = ADV2("grad", **FAST)(tiny_model, x[:0], y[:0], target="next")
    assert empty.shape == (0, 1, 8, 8)
    assert torch.equal(ADV2("grad", **{**FAST, "eps": 0.0})(tiny_model, x, y, target="next"), x)


def test_target_maps_given_and_from_a_class(tiny_model, batch):
    x, y = batch
    given = torch.rand(1, 1, 8, 8)
    a = ADV2("grad", **FAST)
    a(tiny_model, x, y, target="next", target_map=given)
    assert a.result is not None
    from underfire.metrics import l1_distance

    maps = Saliency()(
        tiny_model, a(tiny_model, x, y, target="next", target_map=given), a.result.target
    )
    torch.testing.assert_close(a.result.l1, l1_distance(maps, given.expand_as(maps)))
    ref_x = torch.rand(40, 1, 8, 8)
    with torch.no_grad():
        ref_y = tiny_model(ref_x).argmax(1)  # every reference image is "correctly" classified
    t = ref_y[:6]
    b = ADV2("grad", target_map="class", reference=(ref_x, ref_y), seed=0, **FAST)
    b(tiny_model, x, y, target=t)
    assert b.result is not None and torch.equal(b.result.target, t)


# ---------------------------------------------------------------------------- bad input


class _Detached(Interpreter):
    name = "detached"

    def _attribute(self, model, x, target, create_graph):
        return Saliency().attribute(model, x, target)  # never keeps a graph


def test_errors(tiny_model, batch):
    x, y = batch
    attack = ADV2("grad", **FAST)
    with pytest.raises(ValueError, match="ADV² is a targeted attack"):
        attack(tiny_model, x, y)
    with pytest.raises(UnknownNameError, match="choose one of"):
        ADV2("deconvnet")
    with pytest.raises(TypeError, match="Interpreter or a registered name"):
        ADV2(lambda m, x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no autograd graph"):
        ADV2(_Detached(), **FAST)(tiny_model, x, y, target="next")
    with pytest.raises(ValueError, match="target_map must have shape"):
        attack(tiny_model, x, y, target="next", target_map=torch.rand(6, 8, 8))
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]"):
        attack(tiny_model, x, y, target="next", target_map=torch.full((6, 1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="needs reference images"):
        ADV2("grad", target_map="class")
    with pytest.raises(ValueError, match="same length"):
        ADV2("grad", steps=(1, 2, 3), lam=(0.1, 1.0))
    with pytest.raises(ValueError, match="schedule must be"):
        ADV2("grad", schedule="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps must be"):
        ADV2("grad", eps=-1)
    with pytest.raises(ValueError, match="RTS needs a trained masking network"):
        ADV2("rts")
    with pytest.raises(ValueError, match="unknown target rule"):
        attack(tiny_model, x, y, target="nearest")


def test_pgd_warm_start_is_the_first_candidate(tiny_model, batch):
    # with no joint steps ADV² returns its PGD warm start (judged, recorded)
    x, y = batch
    a = ADV2("grad", preset="small", eps=0.1, step_size=0.02, warm_steps=4, steps=0, lam=1.0)
    out = a(tiny_model, x, y, target="next")
    ref = PGD(eps=0.1, step_size=0.02, steps=4, random_start=False)(tiny_model, x, y, target="next")
    torch.testing.assert_close(out, ref)
