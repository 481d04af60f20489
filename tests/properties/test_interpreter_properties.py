"""Property-based tests over every registered interpreter (hypothesis): any drawn model,
batch and target give either valid maps or one clear exception."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from underfire.interpreters import INTERPRETERS, Interpreter, MaskingNetwork

from .cases import Case, assert_clear, cases, small_kwargs

SETTINGS = settings(
    max_examples=int(os.environ.get("UNDERFIRE_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def build(name: str, case: Case) -> Interpreter:
    factory = INTERPRETERS.get(name)
    kwargs = small_kwargs(factory, name)
    if name == "rts":  # an untrained masking network sized for the drawn model: invariants only
        c, h, w = case.model.input_shape
        kwargs["network"] = MaskingNetwork(
            feat_channels=4,
            num_classes=case.model.num_classes,
            feat_size=(h, w),
            input_size=(h, w),
            width=4,
        ).to(next(case.model.parameters()).dtype)
    try:
        return INTERPRETERS.create(name, **kwargs)
    except TypeError as err:  # a required argument this generic builder cannot guess
        pytest.skip(f"{name} needs arguments the property tests do not know: {err}")


targets = st.sampled_from(["none", "int", "int-out", "negative", "tensor", "tensor-out", "bool"])


@pytest.mark.parametrize("name", INTERPRETERS.names())
@SETTINGS
@given(case=cases(), target_kind=targets, raw=st.booleans())
def test_interpreter_valid_map_or_clear_error(
    name: str, case: Case, target_kind: str, raw: bool
) -> None:
    interpreter = build(name, case)
    n = case.x.shape[0] if case.x.dim() == 4 else 0
    k = case.model.num_classes
    expect_error = [f for f in case.flaws if f != "label"]  # y is not an interpreter input
    if name == "cam" and case.model.probs and n:
        expect_error.append("CAM on a softmax output (no GAP→FC head)")
    target: torch.Tensor | int | None = None
    if target_kind == "int":
        target = k - 1
    elif target_kind == "int-out":
        target, _ = k, expect_error.append("target ≥ K")
    elif target_kind == "negative":
        target, _ = -1, expect_error.append("target < 0")
    elif target_kind == "tensor" and case.y.dim() == 1:
        target = case.y.clamp(0, k - 1)
    elif target_kind == "tensor-out" and case.y.dim() == 1 and n:
        target = case.y.clamp(0, k - 1)
        target[0] = k
        expect_error.append("target ≥ K")
    elif target_kind == "bool":
        target, _ = True, expect_error.append("bool target")  # type: ignore[assignment]
    before = case.snapshot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            maps = interpreter(case.model, case.x, target, raw=raw)
        except Exception as err:  # noqa: BLE001 - the property is about which errors
            assert_clear(err)
            event(f"refused: {type(err).__name__}")
            assert expect_error, f"valid input refused: {type(err).__name__}: {err}"
            case.assert_restored(before)
            return
    assert not expect_error, f"{expect_error} accepted"
    event("valid result")
    x = case.x
    assert maps.shape == (n, 1, *x.shape[2:])
    assert maps.dtype == x.dtype and maps.device == x.device and not maps.requires_grad
    assert bool(torch.isfinite(maps).all())
    if not raw and maps.numel():
        assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    case.assert_restored(before)
    if case.model.probs and n:
        assert any("probabilities" in str(w.message) for w in caught), "probabilities not flagged"


@pytest.mark.parametrize("name", INTERPRETERS.names())
@SETTINGS
@given(case=cases(min_n=1, classes=(2, 3)))
def test_attribute_restores_and_keeps_batch(name: str, case: Case) -> None:
    if case.flaws or (name == "cam" and case.model.probs):  # CAM refuses softmax heads
        return
    interpreter = build(name, case)
    before = case.snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = interpreter.attribute(case.model, case.x)
    assert attr.shape[0] == case.x.shape[0] and bool(torch.isfinite(attr).all())
    case.assert_restored(before)
