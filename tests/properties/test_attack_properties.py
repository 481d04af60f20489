"""Property-based tests over every registered attack (hypothesis): any drawn model, batch,
labels and target give either a valid adversarial batch or one clear exception."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from underfire.attacks import ATTACKS, JSMA, Attack

from .cases import Case, assert_clear, cases, small_kwargs

# UNDERFIRE_PROPERTY_EXAMPLES raises the count for a deeper (slower) search.
SETTINGS = settings(
    max_examples=int(os.environ.get("UNDERFIRE_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def build(name: str) -> Attack:
    factory = ATTACKS.get(name)
    try:
        return ATTACKS.create(name, **small_kwargs(factory, name))
    except TypeError as err:  # a required argument this generic builder cannot guess
        pytest.skip(f"{name} needs arguments the property tests do not know: {err}")


def assert_valid(attack: Attack, case: Case, x_adv: torch.Tensor) -> None:
    x = case.x
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert not x_adv.requires_grad
    assert bool(torch.isfinite(x_adv).all())
    if x.numel():
        assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    delta = (x_adv - x).flatten(1)
    if attack.eps is not None and attack.norm == "linf" and delta.numel():
        assert float(delta.abs().max()) <= attack.eps + 1e-6
    elif attack.eps is not None and attack.norm == "l2" and delta.numel():
        assert bool((delta.norm(dim=1) <= attack.eps + 1e-5).all())
    if isinstance(attack, JSMA) and delta.numel():
        assert bool(((delta != 0).sum(1) <= 2 * attack.max_iterations(x[0].numel())).all())


targets = st.sampled_from(["none", "next", "random", "least-likely", "tensor", "equal-y"])


@pytest.mark.parametrize("name", ATTACKS.names())
@SETTINGS
@given(case=cases(), target_kind=targets)
def test_attack_valid_result_or_clear_error(name: str, case: Case, target_kind: str) -> None:
    attack = build(name)
    n = case.x.shape[0] if case.x.dim() == 4 else 0
    k = case.model.num_classes
    target: torch.Tensor | str | None = None
    expect_error = list(case.flaws)
    if k < 2 and n:
        expect_error.append("one class")
    if target_kind in ("next", "random", "least-likely"):
        target = target_kind
    elif target_kind in ("tensor", "equal-y") and case.y.dim() == 1:
        if target_kind == "tensor" and k >= 2:
            target = (case.y.clamp(0, k - 1) + 1) % k
        elif target_kind == "equal-y":
            target = case.y.clone()
            if n:
                expect_error.append("target = y")
    if target is None and attack.requires_target:
        expect_error.append("no target")
    before = case.snapshot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            x_adv = attack(case.model, case.x, case.y, target)
        except Exception as err:  # noqa: BLE001 - the property is about which errors
            assert_clear(err)
            event(f"refused: {type(err).__name__}")
            assert expect_error, f"valid input refused: {type(err).__name__}: {err}"
            case.assert_restored(before)
            return
    assert not expect_error, f"{expect_error} accepted"
    event("valid result")
    assert_valid(attack, case, x_adv)
    case.assert_restored(before)
    if case.model.probs and n:
        assert any("probabilities" in str(w.message) for w in caught), "probabilities not flagged"


@pytest.mark.parametrize("name", ATTACKS.names())
@SETTINGS
@given(
    value=st.one_of(
        st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 8.0, 1e300, True]),
        st.text(max_size=2),
    ),
    param=st.sampled_from(
        ["eps", "step_size", "const", "kappa", "lr", "theta", "gamma", "lam", "max_const"]
    ),
)
def test_bad_float_hyperparameters_are_refused(name: str, value: object, param: str) -> None:
    import inspect

    factory = ATTACKS.get(name)
    if param not in inspect.signature(factory).parameters:
        return
    if value in (8.0, 1e300) and param not in ("eps", "step_size", "theta", "gamma", "lam"):
        return  # large constants and learning rates are legitimate (CW's c, κ, Adam's lr)
    if param == "theta" and value == -1.0:
        return  # θ = −1 decreases features (JSMA's decreasing variant)
    kwargs = small_kwargs(factory, name) | {param: value}
    with pytest.raises((ValueError, TypeError)) as info:
        ATTACKS.create(name, **kwargs)
    assert param in str(info.value)


def test_linf_eps_above_one_has_the_hint() -> None:
    for name in ("fgsm", "pgd", "bim", "tgsm"):
        with pytest.raises(ValueError, match=r"8/255"):
            ATTACKS.create(name, eps=8)
