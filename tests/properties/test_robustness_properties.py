"""Property-based tests of robust_accuracy and transfer_matrix (hypothesis): valid numbers in
[0, 1] with the model state restored, or one clear exception — never a fake accuracy."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from underfire.attacks import BIM, FGSM, PGD
from underfire.robustness import robust_accuracy, transfer_matrix

from .cases import Case, TinyNet, assert_clear, cases

SETTINGS = settings(
    max_examples=int(os.environ.get("UNDERFIRE_PROPERTY_EXAMPLES", "12")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ATTACKS = {
    "fgsm": lambda: FGSM(eps=0.1),
    "bim": lambda: BIM(eps=0.1, steps=2),
    "pgd-l2": lambda: PGD(eps=0.5, steps=2, norm="l2", seed=0),
}
good_eps = st.lists(st.floats(0, 1), min_size=1, max_size=3)
bad_eps = st.sampled_from(
    [[float("nan")], [0.1, float("inf")], [-0.1], [2.0], [], "0.1", [True], [0.1, "x"]]
)
batch_sizes = st.one_of(st.integers(1, 4), st.integers(1, 4), st.sampled_from([0, -1, 2.5, None]))


def _expected_errors(case: Case, eps: object, batch_size: object, attack_name: str) -> list[str]:
    errors = list(case.flaws)
    n = case.x.shape[0] if case.x.dim() == 4 else 0
    if n == 0 and not errors:
        errors.append("empty data")
    if case.model.num_classes < 2:
        errors.append("one class")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        errors.append("batch size")
    if eps is not None:
        ok = (
            isinstance(eps, list)
            and eps
            and all(
                isinstance(e, float)
                and math.isfinite(e)
                and 0 <= e <= (1 if attack_name != "pgd-l2" else math.inf)
                for e in eps
            )
        )
        if not ok:
            errors.append("eps")
    return errors


@pytest.mark.parametrize("attack_name", list(ATTACKS))
@SETTINGS
@given(
    case=cases(),
    eps=st.one_of(st.none(), good_eps, good_eps, bad_eps),
    batch_size=batch_sizes,
)
def test_robust_accuracy_valid_or_clear(
    attack_name: str, case: Case, eps: object, batch_size: object
) -> None:
    attack = ATTACKS[attack_name]()
    expect = _expected_errors(case, eps, batch_size, attack_name)
    before = case.snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = robust_accuracy(
                case.model, attack, (case.x, case.y), eps, batch_size=batch_size, keep_examples=1
            )
        except Exception as err:  # noqa: BLE001 - the property is about which errors
            assert_clear(err)
            event(f"refused: {type(err).__name__}")
            assert expect, f"valid input refused: {type(err).__name__}: {err}"
            case.assert_restored(before)
            return
    assert not expect, f"{expect} accepted"
    event("valid result")
    n_eps = 1 if eps is None else len(eps)  # type: ignore[arg-type]
    assert len(result["accuracy"]) == len(result["success_rate"]) == n_eps
    for v in [*result["accuracy"], *result["success_rate"], result["clean_accuracy"]]:
        assert 0.0 <= v <= 1.0
    assert result["n"] == case.x.shape[0]
    assert result["examples"]["x_adv"].shape[:2] == (n_eps, 1)
    case.assert_restored(before)


@SETTINGS
@given(case=cases(min_n=1, classes=(2, 3)), eps=st.one_of(good_eps, bad_eps), second=st.booleans())
def test_transfer_matrix_valid_or_clear(case: Case, eps: object, second: bool) -> None:
    c, h, w = case.model.input_shape
    other = TinyNet(c, (h, w), case.model.num_classes, probs=False).to(
        next(case.model.parameters()).dtype
    )
    other.eval()
    victims = {"a": case.model, "b": other} if second else [case.model]
    expect = _expected_errors(case, eps, 2, "fgsm")
    before = case.snapshot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = transfer_matrix([case.model], victims, FGSM(eps=0.1), (case.x, case.y), eps)
        except Exception as err:  # noqa: BLE001 - the property is about which errors
            assert_clear(err)
            event(f"refused: {type(err).__name__}")
            assert expect, f"valid input refused: {type(err).__name__}: {err}"
            case.assert_restored(before)
            return
    assert not expect, f"{expect} accepted"
    event("valid result")
    acc = torch.tensor(result["accuracy"])
    assert acc.shape == (1, 2 if second else 1, len(eps))  # type: ignore[arg-type]
    assert bool(((acc >= 0) & (acc <= 1)).all())
    case.assert_restored(before)


def test_batch_size_zero_no_longer_gives_accuracy_zero() -> None:
    model = TinyNet(1, (4, 4), 3, probs=False).eval()
    x, y = torch.rand(5, 1, 4, 4), torch.randint(0, 3, (5,))
    for bad in (0, -3):
        with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
            robust_accuracy(model, FGSM(eps=0.1), (x, y), batch_size=bad)
    with pytest.raises(ValueError, match="eps\\[0\\] must be a finite number"):
        robust_accuracy(model, FGSM(eps=0.1), (x, y), eps=[float("nan")])


# ---- collect_data: every container of (x, y) it takes, hostile contents and n


class _Holder:
    """An object with ``.x`` and ``.y`` (like underfire's ImageDataset)."""

    def __init__(self, x: object, y: object) -> None:
        self.x, self.y = x, y


class _Items:
    """A map-style dataset of (x_i, y_i) items (``__getitem__`` and ``__len__`` only)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.images, self.labels = x, y  # not .x/.y: those take the in-memory path

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


def _wrap(kind: str, x: torch.Tensor, y: object, batch: int) -> object:
    from torch.utils.data import DataLoader, TensorDataset

    if kind == "tuple":
        return (x, y)
    if kind == "list":
        return [x, y]
    if kind == "holder":
        return _Holder(x, y)
    assert isinstance(y, torch.Tensor)
    if kind == "items":
        return _Items(x, y)
    if kind == "tensor-dataset":
        return TensorDataset(x, y)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


labels_kinds = st.sampled_from(
    ["int64"] * 4 + ["int32", "uint8", "float", "fraction", "2d", "short", "list", "bool"]
)
ns = st.one_of(
    st.none(), st.integers(1, 5), st.sampled_from([0, -1, -3, 2.0, 2.5, True, "2", math.nan])
)
junk = st.sampled_from([None, 3, "data", {"x": 1}, torch.rand(2, 1, 3, 3), (torch.rand(2),)])


@pytest.mark.parametrize("kind", ["tuple", "list", "holder", "items", "tensor-dataset", "loader"])
@SETTINGS
@given(
    case=cases(),
    labels=labels_kinds,
    n=ns,
    batch=st.integers(1, 3),
    garbage=st.one_of(st.none(), junk),
)
def test_collect_data_valid_or_clear(
    case: Case, kind: str, labels: str, n: object, batch: int, garbage: object
) -> None:
    from underfire.robustness import collect_data

    x = case.x
    expect = [f for f in case.flaws if f not in ("dtype", "label")]  # no model to check these
    count = x.shape[0] if x.dim() == 4 else 0
    y: object = {
        "int64": case.y,
        "int32": case.y.int(),
        "uint8": case.y.clamp(0, 255).to(torch.uint8),
        "float": case.y.double(),  # integral values, but not a class index dtype
        "fraction": case.y.double() + 0.5,
        "2d": case.y[:, None],
        "short": case.y[:-1],
        "list": case.y.tolist(),
        "bool": case.y > 0,
    }[labels]
    if x.dim() != 4 or labels in ("2d", "short", "list"):
        kind = "tuple" if kind in ("items", "tensor-dataset", "loader") else kind
    if labels not in ("int64", "int32", "uint8") and not (labels == "short" and count == 0):
        expect.append(f"labels {labels}")  # (an empty batch has no label to leave out)
    if kind in ("items", "tensor-dataset", "loader") and count == 0:
        expect.append("empty data")
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        expect.append("n")
    elif isinstance(n, int) and n < count and "inf" in expect:
        expect.remove("inf")  # the inf is in the last image, which the first n leave out
    data = garbage if garbage is not None else _wrap(kind, x, y, batch)
    if garbage is not None:
        expect = ["not data"]
    x0 = x.clone()
    try:
        got_x, got_y = collect_data(data, n)  # type: ignore[arg-type]
    except Exception as err:  # noqa: BLE001 - the property is about which errors
        assert_clear(err)
        event(f"refused: {type(err).__name__}")
        assert expect, f"valid input refused: {type(err).__name__}: {err}"
        return
    finally:
        assert torch.equal(x.nan_to_num(), x0.nan_to_num()), "input mutated"
    assert not expect, f"{expect} accepted"
    event(f"valid result ({kind})")
    keep = count if n is None else min(count, n)  # type: ignore[type-var]
    assert got_x.shape == (keep, *x.shape[1:]) and got_x.dtype == x.dtype
    assert torch.equal(got_x, x[:keep])
    assert got_y.dtype == torch.int64 and torch.equal(got_y, case.y[:keep])
    assert got_x.min() >= 0 and got_x.max() <= 1 if keep else True
