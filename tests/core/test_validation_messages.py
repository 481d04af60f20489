"""Every input check: the exact message of each refusal (what was wrong and the fix), and
the edges that must still pass (bounds, tolerances, one-element tensors)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from underfire.core.validation import (
    check_eps,
    check_float,
    check_images,
    check_int,
    check_labels,
    check_logits,
    check_positive,
    check_same_device,
    check_seed,
    resolve_device,
)

REFUSALS = [
    (lambda: check_eps("a"), TypeError, "eps must be a number, got str"),
    (lambda: check_eps(-1), ValueError, "eps must be ≥ 0, got -1"),
    (
        lambda: check_eps(2),
        ValueError,
        "eps=2 exceeds 1: inputs live in [0, 1], so an L∞ ball this large allows any image; "
        "give ε on the [0, 1] scale (e.g. 8/255 ≈ 0.031, not 8)",
    ),
    (lambda: check_float(torch.ones(2), "v"), TypeError, "v must be a number, got Tensor"),
    (lambda: check_float(math.nan, "v"), ValueError, "v must be a finite number, got nan"),
    (lambda: check_float(-1, "k", low=0), ValueError, "k must be ≥ 0, got -1"),
    (lambda: check_float(0, "k", low=0, low_inclusive=False), ValueError, "k must be > 0, got 0"),
    (lambda: check_float(2, "k", high=1), ValueError, "k must be ≤ 1, got 2"),
    (lambda: check_float(1, "k", high=1, high_inclusive=False), ValueError, "k must be < 1, got 1"),
    (lambda: check_positive(0, "lr"), ValueError, "lr must be > 0, got 0"),
    (lambda: check_positive(-1, "lr", allow_zero=True), ValueError, "lr must be ≥ 0, got -1"),
    (lambda: check_int(True, "n"), TypeError, "n must be an int, got bool"),
    (lambda: check_int(1.5, "n"), TypeError, "n must be an int, got float"),
    (lambda: check_seed(-1), ValueError, "seed must be ≥ 0, got -1"),
    (lambda: check_seed("0"), TypeError, "seed must be an int, got str"),
    (
        lambda: check_images("img"),
        TypeError,
        "x must be a torch.Tensor of shape (N, C, H, W), got str",
    ),
    (
        lambda: check_images(torch.zeros(1, 2, 2)),
        ValueError,
        "x must have shape (N, C, H, W), got (1, 2, 2) (add a batch dimension with x.unsqueeze(0))",
    ),
    (
        lambda: check_images(torch.zeros(2, 2)),
        ValueError,
        "x must have shape (N, C, H, W), got (2, 2)",
    ),
    (
        lambda: check_images(torch.zeros(1, 1, 1, 1, dtype=torch.uint8)),
        TypeError,
        "x must be a floating tensor with values in [0, 1], got dtype torch.uint8; "
        "convert uint8 images with x.float() / 255",
    ),
    (
        lambda: check_images(torch.full((1, 1, 1, 1), math.nan)),
        ValueError,
        "x contains NaN or infinite values",
    ),
    (
        lambda: check_images(torch.tensor([-0.5, 2.0]).view(1, 1, 1, 2)),
        ValueError,
        "x must have values in [0, 1], got [-0.5, 2]; underfire models normalize inside, "
        "so pass unnormalized images scaled to [0, 1]",
    ),
    (
        lambda: check_labels([0], 1),
        TypeError,
        "y must be a torch.Tensor of class indices, got list",
    ),
    (
        lambda: check_labels(torch.tensor([5]), 1, num_classes=3),
        ValueError,
        "y must be in [0, 2], got values in [5, 5]",
    ),
    (
        lambda: check_logits([[0.0]], 1),
        TypeError,
        "model output must be a tensor of logits (N, K), got list",
    ),
    (
        lambda: check_logits(torch.zeros(2), 2),
        ValueError,
        "model output must have shape (2, num_classes), got (2,); "
        "the model should return one row of class logits per image",
    ),
    (
        lambda: check_logits(torch.zeros(1, 2, dtype=torch.long), 1),
        TypeError,
        "model output must be floating logits, got dtype torch.int64",
    ),
    (
        lambda: check_logits(torch.full((1, 1), math.nan), 1),
        ValueError,
        "model output contains NaN or infinite values; check the model and its weights",
    ),
    (
        lambda: check_same_device(nn.Linear(1, 1), torch.zeros(1, device="meta")),
        ValueError,
        "input is on meta but the model is on cpu; move one of them, e.g. x.to('cpu')",
    ),
    (
        lambda: resolve_device("tpu0"),
        ValueError,
        "unknown device 'tpu0'; use auto, cpu or cuda",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), REFUSALS)
def test_each_refusal_names_the_problem_and_the_fix(call, error, message):
    """Fails if a check lets the input through, raises another error, or words its message
    differently (a lost name, value, hint or fix)."""
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_the_edges_of_each_range_pass():
    """Fails if an edge that must pass is refused: ε = 1 under L∞, a one-element tensor as a
    number, zero where allowed, images at 0, 1 and within the tolerance outside."""
    assert check_eps(1.0) == 1.0
    assert check_float(torch.tensor(0.5), "v") == 0.5
    assert check_positive(0, "w", allow_zero=True) == 0.0
    assert check_seed(None) is None and check_seed(0) == 0
    x = torch.tensor([-1e-6, 0.0, 1.0, 1 + 1e-6], dtype=torch.float64).view(1, 1, 2, 2)
    assert check_images(x) is x
    assert check_same_device(nn.ReLU(), torch.zeros(1)) is None  # no parameters: nothing to check


def _probability_warnings(logits: torch.Tensor) -> list[str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        check_logits(logits, logits.shape[0])
    return [str(w.message) for w in seen]


@pytest.mark.parametrize(
    ("rows", "warns"),
    [
        ([[0.3, 0.7]], True),
        ([[0.0, 1.0]], True),  # an exact zero is still a probability
        ([[0.5, 0.50005]], True),  # sums to 1 within 1e-4
        ([[0.5, 1.0]], False),
        ([[1.0]], False),  # one column: any value sums to itself
        ([[-0.2, 1.2]], False),
    ],
)
def test_probability_rows_warn_and_logits_do_not(rows, warns):
    """Fails if rows that look like probabilities go unwarned (two columns, a zero entry, a sum
    off by < 1e-4), logits are warned about, or the warning loses its advice."""
    messages = _probability_warnings(torch.tensor(rows))
    if not warns:
        assert messages == []
        return
    assert messages == [
        "model output rows are non-negative and sum to 1: the model seems to return "
        "probabilities; underfire expects logits (remove the final softmax), otherwise "
        "gradients saturate and attacks and maps are unreliable"
    ]


def test_resolve_device_defaults_to_auto_and_refuses_cuda_without_a_gpu():
    """Fails if the default is not "auto" (CUDA when present, else CPU), a torch.device is not
    passed through, or asking for CUDA without a GPU is not refused with the fix."""
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device() == expected and resolve_device("auto") == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("meta")) == torch.device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError) as info:
            resolve_device("cuda")
        assert str(info.value) == (
            "device 'cuda' was asked for but no CUDA GPU is available; use --device cpu"
        )
