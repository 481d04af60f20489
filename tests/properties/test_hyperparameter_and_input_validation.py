"""Validation of hyperparameters and inputs on the library side, one named test per failure
kind: NaN and inf getting through, silent nonsense, tracebacks for user errors."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

from underfire.attacks import BIM, CW, FGSM, JSMA, PGD, TGSM, SubstituteAttack, resolve_target
from underfire.core.errors import UnderfireError
from underfire.defenses import AdversarialTraining, Distillation, GradientRegularization
from underfire.defenses.distillation import TemperatureCrossEntropy
from underfire.interpreters import (
    CAM,
    RTS,
    Ensemble,
    GradCAM,
    IntegratedGradients,
    MaskingNetwork,
    RTSConfig,
    Saliency,
    SmoothGrad,
    SmoothReLU,
    evaluate_rts,
    smooth_relu,
    train_rts,
)
from underfire.metrics import accuracy, topk_iou, topk_mask
from underfire.models import model_for_dataset
from underfire.robustness import robust_accuracy
from underfire.train import evaluate

from .cases import TinyNet

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return model_for_dataset("ross-cnn", "digits", hidden=16).eval()


@pytest.fixture
def xy() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 3])


def mixed(model: nn.Module) -> list[bool]:
    """Training mode with the first BN frozen in eval mode; returns the modes to compare."""
    model.train()
    next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    return [m.training for m in model.modules()]


# ------------------------------------------------------------ NaN and inf get through


@pytest.mark.parametrize(
    "build",
    [
        lambda v: FGSM(eps=v),
        lambda v: TGSM(eps=v),
        lambda v: PGD(eps=v),
        lambda v: PGD(eps=0.1, step_size=v),
        lambda v: PGD(eps=v, norm="l2"),
        lambda v: BIM(eps=0.1, step_size=v),
        lambda v: JSMA(theta=v),
        lambda v: JSMA(gamma=v),
        lambda v: CW(const=v),
        lambda v: CW(kappa=v),
        lambda v: CW(lr=v),
        lambda v: CW(max_const=v),
        lambda v: SubstituteAttack(lam=v),
        lambda v: SubstituteAttack(lr=v),
        lambda v: SmoothGrad(stdev=v),
        lambda v: IntegratedGradients(baseline=v),
        lambda v: IntegratedGradients(baseline=torch.full((1, 8, 8), v)),
        lambda v: Ensemble(["grad", "grad"], weights=[1.0, v]),
        lambda v: RTSConfig(lr=v),
        lambda v: RTSConfig(tv=v),
        lambda v: RTSConfig(fake_prob=v),
        lambda v: GradientRegularization(v),
        lambda v: TemperatureCrossEntropy(v),
        lambda v: Distillation(v),
        lambda v: AdversarialTraining(ratio=v),
        lambda v: SmoothReLU(tau=v),
        lambda v: smooth_relu(nn.Sequential(nn.ReLU()), tau=v).__enter__(),
    ],
)
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_non_finite_hyperparameters_are_refused(build, value):
    with pytest.raises(ValueError, match="finite|NaN|must be"):
        build(value)


def test_linf_eps_above_one_is_refused_with_the_scale_hint():
    for build in (lambda: FGSM(eps=8), lambda: PGD(eps=8), lambda: PGD(eps=0.1, step_size=2)):
        with pytest.raises(ValueError, match="8/255"):
            build()
    assert PGD(eps=3.0, norm="l2").eps == 3.0  # an L2 radius may exceed 1


def test_nan_and_inf_inputs_are_refused(model, xy):
    x, y = xy
    for bad in (NAN, INF):
        xb = x.clone()
        xb[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            PGD(eps=0.1, steps=1)(model, xb, y)
        with pytest.raises(ValueError, match="NaN or infinite"):
            Saliency()(model, xb)


def test_non_finite_model_output_is_refused(xy):
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.full((64, 3), INF))

        def forward(self, x):
            return x.flatten(1) @ self.w

    x, y = xy
    with pytest.raises(ValueError, match="model output contains NaN or infinite"):
        FGSM(eps=0.1)(Broken(), x, y.clamp(max=2))
    with pytest.raises(ValueError, match="model output contains NaN or infinite"):
        Saliency()(Broken(), x)


# ------------------------------------------------------------------- silent nonsense


def test_robustness_batch_size_must_be_positive(model, xy):
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
            robust_accuracy(model, FGSM(eps=0.1), xy, batch_size=bad)


def test_target_equal_to_the_true_label_is_refused(model, xy):
    x, y = xy
    t = (y + 1) % 10
    t[1:3] = y[1:3]
    for attack in (FGSM(eps=0.0), TGSM(eps=0.1), PGD(eps=0.1, steps=1), JSMA(), CW(steps=1)):
        with pytest.raises(ValueError, match="target equals the true label y for 2 of 4 samples"):
            attack(model, x, y, t)
    with pytest.raises(ValueError, match="2 of 4"):
        robust_accuracy(model, FGSM(eps=0.1), xy, target=t)


def test_least_likely_rule_never_picks_the_true_label(model, xy):
    x, _ = xy
    with torch.no_grad():
        y = model(x).argmin(1)  # the true label is the least likely class
    t = resolve_target(model, x, y, "least-likely")
    assert t is not None and bool((t != y).all())


def test_labels_out_of_range_are_refused(model, xy):
    x, y = xy
    for bad in (10, 255, -1):
        yb = y.clone()
        yb[0] = bad
        with pytest.raises(ValueError, match=r"y must be in \[0, 9\]"):
            FGSM(eps=0.1)(model, x, yb)
        with pytest.raises(ValueError, match=r"y must be in \[0, 9\]"):
            FGSM(eps=0.0)(model, x, yb)  # ε = 0 runs no gradient, the labels are still checked
    for target in (10, -1, torch.tensor([0, 1, 2, 10])):
        with pytest.raises(ValueError, match="target must"):
            Saliency()(model, x, target)


def test_probabilities_instead_of_logits_warn(model, xy):
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    x, y = xy
    for call in (
        lambda: FGSM(eps=0.1)(probs, x, y),
        lambda: Saliency()(probs, x),
        lambda: robust_accuracy(probs, FGSM(eps=0.1), xy),
    ):
        with pytest.warns(UserWarning, match="seems to return probabilities"):
            call()


def test_one_class_models_are_refused_by_attacks_but_explained():
    model = TinyNet(1, (4, 4), 1, probs=False).eval()
    x, y = torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long)
    for attack in (FGSM(eps=0.1), PGD(eps=0.1, steps=1), CW(steps=1), JSMA()):
        with pytest.raises(ValueError, match="at least 2 classes"):
            attack(model, x, y)
    assert Saliency()(model, x).shape == (3, 1, 4, 4)


def test_empty_batches_give_empty_results(model):
    x, y = torch.rand(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)
    for attack in (FGSM(eps=0.1), PGD(eps=0.1), JSMA(), CW(steps=1)):
        assert attack(model, x, y).shape == (0, 1, 8, 8)
    assert [a.shape for a in FGSM().sweep(model, x, y, [0.1, 0.2])] == [(0, 1, 8, 8)] * 2
    for interpreter in (Saliency(), SmoothGrad(samples=2), IntegratedGradients(steps=2), GradCAM()):
        assert interpreter(model, x).shape == (0, 1, 8, 8)
    assert Saliency().attribute(model, x).shape == (0, 1, 8, 8)
    assert math.isnan(accuracy(torch.zeros(0, 10), y))


def test_metrics_validate_k_and_maps():
    a, b = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    for k in (0.0, 1.5, NAN, -0.1):
        with pytest.raises(ValueError, match="k"):
            topk_mask(a, k)
        with pytest.raises(ValueError):
            topk_iou(a, b, k)
    bad = a.clone()
    bad[0, 0, 0, 0] = NAN
    with pytest.raises(ValueError, match="NaN"):
        topk_iou(bad, b)
    with pytest.raises(ValueError, match=r"y must be in \[0, 2\]"):
        accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))


# ------------------------------------------------------- tracebacks for user errors (API)


def test_float64_input_into_a_float32_model(model, xy):
    x, y = xy
    for call in (
        lambda: FGSM(eps=0.1)(model, x.double(), y),
        lambda: Saliency()(model, x.double()),
        lambda: robust_accuracy(model, FGSM(eps=0.1), (x.double(), y)),
        lambda: SubstituteAttack(n_seed=2).fit(model, x.double()),
    ):
        with pytest.raises(TypeError, match="dtype torch.float64 but the model's parameters"):
            call()


def test_wrong_spatial_size_is_one_value_error(model):
    x, y = torch.rand(2, 1, 5, 5), torch.tensor([0, 1])
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # fails inside torch on 5×5 input
    for call in (
        lambda: PGD(eps=0.1, steps=1)(model, x, y),
        lambda: Saliency()(model, x),
        lambda: IntegratedGradients(steps=2)(model, x),
    ):
        with pytest.raises(ValueError, match=r"input of shape \(N, 1, 8, 8\), got \(2, 1, 5, 5\)"):
            call()
    for call in (
        lambda: PGD(eps=0.1, steps=1)(plain, x, y),
        lambda: Saliency()(plain, x),
        lambda: SmoothGrad(samples=2)(plain, x, 0),
    ):
        with pytest.raises(ValueError, match=r"cannot run on input of shape \(\d+, 1, 5, 5\)"):
            call()


@pytest.mark.parametrize(
    "head", [lambda z: z[:, 0], lambda z: z[:, :, None], lambda z: z[:1], lambda z: (z, z)]
)
def test_outputs_of_the_wrong_shape(model, xy, head):
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x):
            return head(self.inner(x))

    x, y = xy
    for call in (lambda: FGSM(eps=0.1)(Odd(), x, y), lambda: Saliency()(Odd(), x, 0)):
        with pytest.raises((ValueError, TypeError), match="model output must"):
            call()


def test_errors_are_clear_types(model, xy):
    x, y = xy
    with pytest.raises(TypeError, match="torch.nn.Module"):
        FGSM()(lambda t: t, x, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int class"):
        Saliency()(model, x, "cat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not broadcast"):
        IntegratedGradients(steps=2, baseline=torch.zeros(3, 7, 8))(model, x)
    with pytest.raises(ValueError, match="would enlarge"):
        IntegratedGradients(steps=2, baseline=torch.zeros(3, 8, 8))(model, x)
    assert issubclass(UnderfireError, Exception)


# ------------------------------------------------ mixed train/eval states come back exactly


def test_helpers_restore_mixed_train_eval_states(model, xy):
    x, y = xy
    teacher = copy.deepcopy(model)
    calls = [
        lambda: robust_accuracy(model, FGSM(eps=0.1), xy, eps=[0.0, 0.1]),
        lambda: evaluate(model, torch.utils.data.TensorDataset(x, y)),
        lambda: AdversarialTraining(FGSM(eps=0.1)).adversarial_examples(model, x, y),
        lambda: Distillation(10.0, teacher=model).soft_labels(x),
        lambda: train_rts(model, (x, y), RTSConfig(steps=2, batch_size=2, width=4)),
        lambda: GradCAM()(model, x),
        lambda: CAM()(TinyNet(1, (8, 8), 10, probs=False), x),
    ]
    for call in calls:
        modes = mixed(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
        assert [m.training for m in model.modules()] == modes, call
    rts, _ = train_rts(teacher.eval(), (x, y), RTSConfig(steps=2, batch_size=2, width=4))
    modes = mixed(model)
    evaluate_rts(rts, model, x)
    assert [m.training for m in model.modules()] == modes


def test_rts_refuses_a_foreign_classifier(model, xy):
    x, _ = xy
    net = MaskingNetwork(
        feat_channels=3, num_classes=10, feat_size=(2, 2), input_size=(8, 8), width=4
    )
    with pytest.raises(ValueError, match="trained on 3-channel features"):
        RTS(net)(model, x)
    with pytest.raises(TypeError, match="MaskingNetwork"):
        RTS(nn.Linear(2, 2))  # type: ignore[arg-type]
