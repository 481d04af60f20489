"""Interpreter.differentiable_map: the one map attacks and training differentiate, for every
interpreter, under the interpreter's guard; a MapState warm-starts MASK across steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
from underfire.interpreters.base import MapState, normalize_maps


def _rts(model: nn.Module) -> RTS:
    torch.manual_seed(0)
    net = MaskingNetwork(
        feat_channels=32, num_classes=5, feat_size=(4, 4), input_size=(16, 16), width=8
    )
    return RTS(net.eval())


FACTORIES = {
    "grad": lambda m: Saliency(),
    "smoothgrad": lambda m: SmoothGrad(samples=3, seed=0),
    "ig": lambda m: IntegratedGradients(steps=4),
    "cam": lambda m: CAM(),
    "gradcam": lambda m: GradCAM(),
    "mask": lambda m: Mask(steps=3),
    "ensemble": lambda m: Ensemble(["grad", "gradcam"], weights=[1.0, 2.0]),
}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 1, 16, 16, generator=g), torch.tensor([0, 2, 4])


@pytest.mark.filterwarnings("ignore::underfire.interpreters.mask.MaskWarning")
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_differentiable_map_without_state_is_the_create_graph_call(gap_model, name):
    interp = FACTORIES[name](gap_model)
    x, t = _batch()
    xg = x.clone().requires_grad_(True)
    got = interp.differentiable_map(gap_model, xg, t)
    assert got.requires_grad and got.shape == (3, 1, 16, 16)
    expected = interp(gap_model, x.clone().requires_grad_(True), t, create_graph=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    (grad,) = torch.autograd.grad((got * torch.rand_like(got)).sum(), xg, allow_unused=True)
    assert grad is not None  # a graph to the input


def test_differentiable_map_of_rts_has_a_graph_to_the_input(gap_model):
    interp = _rts(gap_model)
    x, t = _batch()
    xg = x.clone().requires_grad_(True)
    got = interp.differentiable_map(gap_model, xg, t, state=MapState())
    torch.testing.assert_close(got, interp(gap_model, x, t), rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(got.sum(), xg)
    assert grad.abs().sum() > 0


def test_differentiable_map_runs_under_the_interpreters_guard(gap_model):
    x, t = _batch()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Saliency().differentiable_map(gap_model, x + 2.0, t)
    with pytest.raises(ValueError, match="target"):
        Mask(steps=2).differentiable_map(gap_model, x, torch.tensor([0, 1, 9]), state=MapState())
    gap_model.train()
    next(m for m in gap_model.modules() if isinstance(m, nn.BatchNorm2d)).eval()  # mixed modes
    modes = [m.training for m in gap_model.modules()]
    try:
        Mask(steps=2).differentiable_map(gap_model, x, t, state=MapState())
        assert [m.training for m in gap_model.modules()] == modes
    finally:
        gap_model.eval()


def test_mask_with_a_state_warm_starts_from_the_previous_step(gap_model):
    x, t = _batch()
    mask = Mask(steps=4)
    state = MapState(unroll=2, reset=3, lr=0.05)
    maps = []
    for step in range(4):
        state.step = step
        maps.append(
            mask.differentiable_map(gap_model, x.clone().requires_grad_(True), t, state=state)
        )
    # the same sequence by hand: a full MASK run at steps 0 and 3, warm starts in between
    est = None
    for step in range(4):
        if step % 3 == 0:
            est = mask.optimize(gap_model, x, t)
        m = mask.optimize(
            gap_model, x, t, init=est, steps=2, create_graph=True, optimizer="sgd", sgd_lr=0.05
        )
        est = m.detach()
        expected = normalize_maps(mask.mask_to_map(m, (16, 16)))
        torch.testing.assert_close(maps[step], expected, rtol=0, atol=0)
    torch.testing.assert_close(state.slots[id(mask)][0], est, rtol=0, atol=0)


def test_ensemble_hands_the_state_to_its_mask_member(gap_model):
    x, t = _batch()
    mask = Mask(steps=3)
    ens = Ensemble([Saliency(), mask], weights=[1.0, 3.0])
    state = MapState()
    got = ens.differentiable_map(gap_model, x.clone().requires_grad_(True), t, state=state)
    assert id(mask) in state.slots
    member_state = MapState()
    parts = [
        Saliency().differentiable_map(gap_model, x, t) * 0.25,
        mask.differentiable_map(gap_model, x, t, state=member_state) * 0.75,
    ]
    torch.testing.assert_close(got, normalize_maps(parts[0] + parts[1]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("interp", "second_order", "optimized"),
    [
        (Saliency(), True, False),
        (SmoothGrad(), True, False),
        (IntegratedGradients(), True, False),
        (GradCAM(), True, False),
        (CAM(), False, False),
        (Mask(), True, True),
        (Ensemble(["cam"]), False, False),
        (Ensemble(["cam", "grad"]), True, False),
        (Ensemble(["cam", "mask"]), True, True),
    ],
)
def test_interpreters_say_whether_their_map_is_second_order_or_optimized(
    interp, second_order, optimized
):
    assert interp.second_order is second_order
    assert interp.optimized is optimized


def test_map_state_refuses_bad_settings():
    with pytest.raises(ValueError, match="unroll"):
        MapState(unroll=0)
    with pytest.raises(TypeError, match="reset"):
        MapState(reset=1.5)  # type: ignore[arg-type]


def test_differentiable_map_is_final():
    with pytest.raises(TypeError, match="_differentiable_map"):

        class Custom(Interpreter):
            def differentiable_map(self, model, x, target=None, *, state=None):  # type: ignore[override]
                return x
