"""Reference equivalence with Captum 0.9 on the same model, inputs and targets.

SmoothGrad noise: Captum's NoiseTunnel draws ``torch.normal(0, σ·ones)`` of shape
(N·samples, C, H, W) from the global RNG on ``x.repeat_interleave(samples, 0)``; ours draws
the same tensor the same way, so reseeding the global RNG before each call gives both the
same noise and the results agree to float tolerance.
"""

from __future__ import annotations

import pytest
import torch

captum_attr = pytest.importorskip("captum.attr")

from underfire.interpreters import CAM, GradCAM, IntegratedGradients, Saliency, SmoothGrad  # noqa: E402 (after importorskip)
from underfire.models import get_layer  # noqa: E402

TOL = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="module")
def target(gap_model, gap_x):
    return torch.tensor([0, 1, 2, 3, 4, 0])


def test_saliency_matches_captum(gap_model, gap_x, target):
    ours = Saliency().attribute(gap_model, gap_x, target)
    ref = captum_attr.Saliency(gap_model).attribute(gap_x.clone(), target=target, abs=True)
    torch.testing.assert_close(ours, ref, **TOL)
    signed = Saliency(absolute=False).attribute(gap_model, gap_x, target)
    torch.testing.assert_close(
        signed,
        captum_attr.Saliency(gap_model).attribute(gap_x.clone(), target=target, abs=False),
        **TOL,
    )


def test_saliency_on_trained_digits_small(digits_small, digits_splits):
    x = digits_splits["test"].x[:16]
    y = digits_splits["test"].y[:16]
    torch.testing.assert_close(
        Saliency().attribute(digits_small, x, y),
        captum_attr.Saliency(digits_small).attribute(x.clone(), target=y),
        **TOL,
    )


@pytest.mark.parametrize(
    "method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_middle"]
)
def test_integrated_gradients_matches_captum(gap_model, gap_x, target, method):
    ours = IntegratedGradients(steps=20, method=method).attribute(gap_model, gap_x, target)
    ref = captum_attr.IntegratedGradients(gap_model).attribute(
        gap_x.clone(), baselines=0.0, target=target, n_steps=20, method=method
    )
    if method == "riemann_trapezoid":
        # Captum's trapezoid weights are 1/n (ends 1/2n) and sum to (n−1)/n; ours are the exact
        # trapezoid rule on n points, 1/(n−1) (ends 1/(2(n−1))), which sum to 1.
        ours = ours * (19 / 20)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_integrated_gradients_chunked_equals_unchunked(gap_model, gap_x, target):
    full = IntegratedGradients(steps=12).attribute(gap_model, gap_x, target)
    chunked = IntegratedGradients(steps=12, batch_size=5 * gap_x.shape[0]).attribute(
        gap_model, gap_x, target
    )
    torch.testing.assert_close(full, chunked, **TOL)


def test_integrated_gradients_completeness(gap_model, gap_x, target):
    # Σ IG = f_c(x) − f_c(baseline) up to quadrature error (Sundararajan et al., Prop. 1).
    ig = IntegratedGradients(steps=200).attribute(gap_model, gap_x, target)
    with torch.no_grad():
        f = gap_model(gap_x).gather(1, target[:, None]).squeeze(1)
        f0 = gap_model(torch.zeros_like(gap_x)).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(ig.flatten(1).sum(1), f - f0, rtol=2e-2, atol=2e-3)


def test_smoothgrad_matches_captum_noise_tunnel(gap_model, gap_x, target):
    torch.manual_seed(123)
    ours = SmoothGrad(samples=8, stdev=0.2).attribute(gap_model, gap_x, target)
    torch.manual_seed(123)
    nt = captum_attr.NoiseTunnel(captum_attr.Saliency(gap_model))
    ref = nt.attribute(gap_x.clone(), nt_type="smoothgrad", nt_samples=8, stdevs=0.2, target=target)
    torch.testing.assert_close(ours, ref, **TOL)


def test_smoothgrad_seeded_is_reproducible_and_batched(gap_model, gap_x, target):
    sg = SmoothGrad(samples=4, stdev=0.1, seed=7)
    a = sg.attribute(gap_model, gap_x, target)
    torch.testing.assert_close(a, sg.attribute(gap_model, gap_x, target), rtol=0, atol=0)
    torch.testing.assert_close(
        a,
        SmoothGrad(samples=4, stdev=0.1, seed=7, batch_size=5).attribute(gap_model, gap_x, target),
        **TOL,
    )


def test_gradcam_matches_captum_layer_gradcam(gap_model, gap_x, target):
    layer = get_layer(gap_model, gap_model.target_layer)
    ref_layer = captum_attr.LayerGradCam(gap_model, layer)
    ours = GradCAM().attribute(gap_model, gap_x, target)
    torch.testing.assert_close(
        ours, ref_layer.attribute(gap_x.clone(), target=target, relu_attributions=True), **TOL
    )
    signed = GradCAM(relu=False).attribute(gap_model, gap_x, target)
    torch.testing.assert_close(signed, ref_layer.attribute(gap_x.clone(), target=target), **TOL)


def test_gradcam_matches_captum_on_ross_cnn(digits_small, digits_splits):
    x = digits_splits["test"].x[:16]
    y = digits_splits["test"].y[:16]
    layer = get_layer(digits_small, digits_small.target_layer)
    ref = captum_attr.LayerGradCam(digits_small, layer).attribute(
        x.clone(), target=y, relu_attributions=True
    )
    torch.testing.assert_close(GradCAM().attribute(digits_small, x, y), ref, **TOL)


def test_cam_equals_gradcam_up_to_scale_on_gap_network(gap_model, gap_x, target):
    cam = CAM().attribute(gap_model, gap_x, target)
    h, w = cam.shape[-2:]
    signed = GradCAM(relu=False).attribute(gap_model, gap_x, target)
    torch.testing.assert_close(cam / (h * w), signed, **TOL)
    torch.testing.assert_close(
        torch.relu(cam) / (h * w), GradCAM().attribute(gap_model, gap_x, target), **TOL
    )
    # and the normalized maps agree wherever CAM is non-negative everywhere
    torch.testing.assert_close(
        CAM()(gap_model, gap_x, target, raw=True) / (h * w),
        GradCAM(relu=False)(gap_model, gap_x, target, raw=True),
        **TOL,
    )


def test_cam_is_class_logit_decomposition(gap_model, gap_x, target):
    # Σ_ij CAM / (h·w) + b_c = f_c(x): CAM distributes the logit over locations (Zhou et al. 2016).
    cam = CAM().attribute(gap_model, gap_x, target)
    with torch.no_grad():
        logits = gap_model(gap_x).gather(1, target[:, None]).squeeze(1)
    bias = gap_model.net.fc.bias[target]
    torch.testing.assert_close(cam.mean(dim=(1, 2, 3)) + bias.detach(), logits, **TOL)


def test_cam_refuses_networks_without_gap_head(digits_small, digits_splits):
    with pytest.raises(ValueError, match="GradCAM"):
        CAM()(digits_small, digits_splits["test"].x[:2])
