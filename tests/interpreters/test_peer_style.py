"""Captum's calling style on every interpreter: the model bound at construction.

``Saliency(model).attribute(x, target=y)`` returns the native attribution, as Captum's
``attribute`` does; compared with Captum 0.9 on the same model, inputs and targets. Defaults
that differ from Captum's are passed explicitly (and asserted to differ where they do):
Captum's ``LayerGradCam`` does not ReLU by default (``relu_attributions=False``), ours does.
"""

from __future__ import annotations

import pytest
import torch

captum_attr = pytest.importorskip("captum.attr")

import underfire.interpreters as I  # noqa: E402 (after importorskip)
from underfire.interpreters import (  # noqa: E402
    GradCAM,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from underfire.models import get_layer  # noqa: E402

TOL = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="module")
def target():
    return torch.tensor([0, 1, 2, 3, 4, 0])


def test_bound_saliency_equals_captum(gap_model, gap_x, target):
    ref = captum_attr.Saliency(gap_model).attribute(gap_x.clone(), target=target)  # abs=True
    torch.testing.assert_close(Saliency(gap_model).attribute(gap_x, target=target), ref, **TOL)
    signed = captum_attr.Saliency(gap_model).attribute(gap_x.clone(), target=target, abs=False)
    ours = Saliency(gap_model, absolute=False).attribute(gap_x, target=target)
    assert (ours < 0).any()
    torch.testing.assert_close(ours, signed, **TOL)


def test_bound_integrated_gradients_equals_captum(gap_model, gap_x, target):
    ref = captum_attr.IntegratedGradients(gap_model).attribute(
        gap_x.clone(), target=target, n_steps=20
    )
    ours = IntegratedGradients(gap_model, steps=20).attribute(gap_x, target=target)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_bound_gradcam_equals_captum_layer_gradcam(gap_model, gap_x, target):
    layer = captum_attr.LayerGradCam(gap_model, get_layer(gap_model, gap_model.target_layer))
    signed = layer.attribute(gap_x.clone(), target=target)  # Captum's default: no ReLU
    ours = GradCAM(gap_model, relu=False).attribute(gap_x, target=target)
    torch.testing.assert_close(ours, signed, **TOL)
    relu = GradCAM(gap_model).attribute(gap_x, target=target)
    torch.testing.assert_close(
        relu, layer.attribute(gap_x.clone(), target=target, relu_attributions=True), **TOL
    )
    assert (signed < 0).any(), "the defaults differ only if some Grad-CAM value is negative"


def test_bound_smoothgrad_equals_captum_noise_tunnel(gap_model, gap_x, target):
    torch.manual_seed(5)
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(gap_model)).attribute(
        gap_x.clone(), nt_type="smoothgrad", nt_samples=6, stdevs=0.2, target=target
    )
    torch.manual_seed(5)
    ours = SmoothGrad(gap_model, samples=6, stdev=0.2).attribute(gap_x, target=target)
    torch.testing.assert_close(ours, ref, **TOL)


@pytest.mark.parametrize("name", ["grad", "smoothgrad", "ig", "cam", "gradcam"])
def test_bound_calls_equal_unbound_calls(name, gap_model, gap_x, target):
    settings = {"smoothgrad": {"samples": 3, "seed": 0}, "ig": {"steps": 8}}.get(name, {})
    cls = I.INTERPRETERS.get(name)
    bound, unbound = cls(gap_model, **settings), I.create(name, **settings)
    assert bound.model is gap_model and unbound.model is None
    same = {"atol": 0, "rtol": 0}
    torch.testing.assert_close(
        bound.attribute(gap_x, target=target), unbound.attribute(gap_model, gap_x, target), **same
    )
    torch.testing.assert_close(bound(gap_x, target), unbound(gap_model, gap_x, target), **same)
    torch.testing.assert_close(
        bound(gap_x, raw=True), unbound.bind(gap_model)(gap_x, raw=True), **same
    )
    maps = bound(gap_x)
    assert maps.shape == (gap_x.shape[0], 1, *gap_x.shape[2:])
    assert float(maps.amin()) >= 0 and float(maps.amax()) <= 1


def test_subclass_overrides_accept_the_bound_form(gap_model, gap_x):
    # MASK overrides __call__ with the (model, x, ...) signature; the base wraps such overrides
    class Doubled(Saliency):
        def attribute(self, model, x, target=None, *, create_graph=False):  # type: ignore[override]
            return 2 * super().attribute(model, x, target, create_graph=create_graph)

    torch.testing.assert_close(
        Doubled(gap_model).attribute(gap_x, target=1),
        2 * Saliency().attribute(gap_model, gap_x, 1),
    )
    torch.testing.assert_close(
        Doubled().attribute(gap_model, gap_x, 1), 2 * Saliency().attribute(gap_model, gap_x, 1)
    )


def test_binding_errors_name_the_fix(gap_model, gap_x):
    with pytest.raises(TypeError, match="not bound to a model"):
        Saliency().attribute(gap_x)
    with pytest.raises(TypeError, match="only positional argument"):
        Saliency("max")  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'abs'"):
        Saliency(gap_model).attribute(gap_x, abs=False)
