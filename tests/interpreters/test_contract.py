"""Contract tests, parametrized over every registered interpreter."""

from __future__ import annotations

import pytest
import torch

from underfire.core.registry import UnknownNameError
from underfire.interpreters import INTERPRETERS, Interpreter, create_interpreter
from underfire.interpreters.rts import RTS, MaskingNetwork

KWARGS = {"mask": {"steps": 5}, "smoothgrad": {"samples": 4, "seed": 0}, "ig": {"steps": 8}}


def build(name: str, model) -> Interpreter:
    if name == "rts":
        torch.manual_seed(0)
        layer_channels = model.net.stage3[-1].conv2.out_channels
        return RTS(
            MaskingNetwork(
                feat_channels=layer_channels,
                num_classes=5,
                feat_size=(4, 4),
                input_size=(16, 16),
                width=8,
            )
        )
    return create_interpreter(name, **KWARGS.get(name, {}))


NAMES = INTERPRETERS.names()


def test_registry_has_every_method():
    assert set(NAMES) == {"grad", "smoothgrad", "ig", "cam", "gradcam", "mask", "rts", "ensemble"}
    with pytest.raises(UnknownNameError, match="gradcam"):
        create_interpreter("grad-cam++")


@pytest.mark.parametrize("name", NAMES)
def test_contract(name, gap_model, gap_x):
    interp = build(name, gap_model)
    x = gap_x.clone()
    x_before = x.clone()
    gap_model.train()
    gap_model.net.stem.eval()  # a mixed-mode model must come back mixed
    sentinel = torch.full_like(gap_model.net.fc.weight, 7.0)
    gap_model.net.fc.weight.grad = sentinel
    try:
        maps = interp(gap_model, x)
        assert (
            gap_model.training and not gap_model.net.stem.training and gap_model.net.stage1.training
        )
        assert gap_model.net.fc.weight.grad is sentinel and torch.equal(
            sentinel, torch.full_like(sentinel, 7.0)
        )
        assert all(p.grad is None for n, p in gap_model.named_parameters() if n != "net.fc.weight")
    finally:
        gap_model.net.fc.weight.grad = None
        gap_model.eval()
    assert torch.equal(x, x_before)
    assert maps.shape == (x.shape[0], 1, 16, 16)
    assert maps.dtype == x.dtype and maps.device == x.device
    assert not maps.requires_grad
    assert torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1
    raw = interp(gap_model, x, raw=True)
    assert raw.shape == maps.shape and torch.isfinite(raw).all()


@pytest.mark.parametrize("name", NAMES)
def test_predicted_target_and_batch_consistency(name, gap_model, gap_x):
    interp = build(name, gap_model)
    with torch.no_grad():
        pred = gap_model(gap_x).argmax(1)
    a = interp(gap_model, gap_x)
    b = interp(gap_model, gap_x, pred)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # batched result equals per-sample result (SmoothGrad: same seed but different noise per
    # batch layout, so it is compared at the level of the seeded noise draw only)
    if name != "smoothgrad":
        single = torch.cat([interp(gap_model, gap_x[i : i + 1], pred[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(a[:3], single, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_create_graph_keeps_graph_to_input(name, gap_model, gap_x):
    interp = build(name, gap_model)
    x = gap_x[:2].clone().requires_grad_(True)
    maps = interp(gap_model, x, torch.tensor([1, 2]), create_graph=True)
    assert maps.requires_grad
    (g,) = torch.autograd.grad(maps.sum(), x, allow_unused=True)
    assert g is not None and torch.isfinite(g).all()


@pytest.mark.parametrize("name", ["grad", "gradcam"])
def test_bad_inputs_raise_clearly(name, gap_model, gap_x):
    interp = build(name, gap_model)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interp(gap_model, gap_x * 3)
    with pytest.raises(ValueError, match="batch dimension"):
        interp(gap_model, gap_x[0])
    with pytest.raises(ValueError, match="target"):
        interp(gap_model, gap_x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target must be in \[0, 4\]"):
        interp(gap_model, gap_x, torch.full((6,), 9))
    maps = interp(gap_model, gap_x, 3)
    torch.testing.assert_close(maps, interp(gap_model, gap_x, torch.full((6,), 3)))


def test_int_class_vs_per_image_and_cam_on_ross(digits_small, digits_splits):
    from underfire.interpreters import CAM, GradCAM

    x = digits_splits["test"].x[:4]
    maps = GradCAM()(digits_small, x)
    assert maps.shape == (4, 1, 8, 8)
    with pytest.raises(ValueError):
        CAM()(digits_small, x)
