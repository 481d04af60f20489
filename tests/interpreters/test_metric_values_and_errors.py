"""The measures' exact values on small cases (accuracy, success rate, top-k masks, rank
correlation at its edges) and the message of every refused input."""

from __future__ import annotations

import math

import pytest
import torch

from underfire.metrics import (
    accuracy,
    l1_distance,
    map_metrics,
    rank,
    spearman,
    success_rate,
    topk_iou,
    topk_mask,
)

LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0]])  # argmax 0, 1, 2


def test_accuracy_counts_rows_whose_argmax_is_the_label():
    """Fails if accuracy compares another axis, counts mistakes, or is not NaN on no rows."""
    assert accuracy(LOGITS, torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)
    assert math.isnan(accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_success_rate_untargeted_and_targeted():
    """Fails if untargeted success is not "prediction differs from y", targeted success not
    "prediction equals the target", or no rows do not give NaN."""
    y = torch.tensor([0, 2, 1])
    assert success_rate(LOGITS, y) == pytest.approx(2 / 3)
    assert success_rate(LOGITS, y, torch.tensor([1, 1, 0])) == pytest.approx(1 / 3)
    assert math.isnan(success_rate(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))


def test_targets_are_checked_against_the_number_of_rows_not_of_classes():
    """Fails if the target's expected length is taken from the class axis (2 rows, 3 classes)."""
    assert success_rate(LOGITS[:2], torch.tensor([0, 0]), torch.tensor([1, 1])) == 0.5


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: accuracy([[1.0]], torch.tensor([0])),
            ValueError,
            "logits must be a (N, K) tensor, got list",
        ),
        (
            lambda: accuracy(torch.ones(3), torch.tensor([0])),
            ValueError,
            "logits must be a (N, K) tensor, got shape (3,)",
        ),
        (
            lambda: accuracy(LOGITS, torch.tensor([0, 1, 3])),
            ValueError,
            "y must be in [0, 2], got values in [0, 3]",
        ),
        (
            lambda: success_rate(LOGITS, torch.tensor([0, 1, 2]), torch.tensor([0, 5, 1])),
            ValueError,
            "target must be in [0, 2], got values in [0, 5]",
        ),
        (
            lambda: success_rate(LOGITS, torch.tensor([0, 1, 2]), torch.tensor([0, 1])),
            ValueError,
            "target must have shape (3,) to match the batch, got (2,)",
        ),
        (
            lambda: l1_distance([0.0], torch.zeros(1, 2)),
            TypeError,
            "map a must be a torch.Tensor, got list",
        ),
        (
            lambda: l1_distance(torch.zeros(1, 2), None),
            TypeError,
            "map b must be a torch.Tensor, got NoneType",
        ),
        (
            lambda: l1_distance(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2)),
            TypeError,
            "map a must be a floating tensor, got dtype torch.int64",
        ),
        (
            lambda: l1_distance(torch.zeros(4), torch.zeros(4)),
            ValueError,
            "maps must be batched (N, ...), got shape (4,)",
        ),
        (
            lambda: spearman(torch.zeros(1, 2), torch.tensor([[0.0, math.inf]])),
            ValueError,
            "map b contains NaN or infinite values",
        ),
        (
            lambda: topk_iou(torch.zeros(1, 4), torch.zeros(1, 4), []),
            ValueError,
            "ks must hold at least one fraction",
        ),
        (
            lambda: topk_iou(torch.zeros(1, 4), torch.zeros(1, 4), [0.5, 1.5]),
            ValueError,
            "ks[1] must be ≤ 1, got 1.5",
        ),
        (
            lambda: topk_iou(torch.zeros(1, 4), torch.zeros(1, 4), [0.0]),
            ValueError,
            "ks[0] must be > 0, got 0",
        ),
        (lambda: topk_mask(torch.zeros(1, 4), 0.0), ValueError, "k must be > 0, got 0"),
        (
            lambda: topk_mask(torch.zeros(4), 0.5),
            ValueError,
            "maps must be batched (N, ...), got shape (4,)",
        ),
        (
            lambda: topk_mask(torch.zeros(2, 0), 0.5),
            ValueError,
            "maps have no pixels; top-k needs at least one",
        ),
    ],
)
def test_refused_inputs_name_the_problem(call, error, message):
    """Fails if a refused input raises another error or a message that loses what was wrong."""
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_topk_mask_takes_the_ceiling_of_k_pixels_and_works_on_one_pixel():
    """Fails if the count is not ⌈k·P⌉ (at least 1), or one-pixel maps are refused."""
    m = torch.arange(10.0).view(1, 10)
    assert topk_mask(m, 0.1).nonzero()[:, 1].tolist() == [9]
    assert topk_mask(m, 0.25).nonzero()[:, 1].tolist() == [7, 8, 9]
    assert topk_mask(torch.ones(2, 1), 0.5).tolist() == [[True], [True]]


def test_topk_iou_accepts_k_equal_to_one_and_scores_identical_maps_one():
    """Fails if k = 1 (every pixel) is refused, or a shared top-k does not give IoU 1."""
    a = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(topk_iou(a, a, [0.2, 1.0]), torch.ones(2))


def test_map_metrics_uses_the_given_fractions():
    """Fails if map_metrics ignores its ``ks`` (the default fractions give another IoU here)."""
    a = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    b = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
    assert map_metrics(a, b, ks=[0.25])["iou"] == 0.0
    assert map_metrics(a, b, ks=[0.5])["iou"] == 1.0


def test_rank_keeps_double_precision():
    """Fails if ranks of float64 values are returned in float32."""
    assert rank(torch.tensor([[0.5, 0.25, 0.5]], dtype=torch.float64)).dtype == torch.float64
    assert rank(torch.tensor([[0.5, 0.25, 0.5]])).tolist() == [[2.5, 1.0, 2.5]]


def test_spearman_of_two_pixel_maps_is_plus_or_minus_one():
    """Fails if a small (< 1) but nonzero denominator is treated as a constant map: two pixels
    give centred ranks ±0.5, a denominator of 0.5."""
    a = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [3.0, 1.0]])
    torch.testing.assert_close(spearman(a, b), torch.tensor([1.0, -1.0]))


def test_l1_distance_is_not_checked_for_finiteness():
    """Fails if l1_distance, a differentiable loss term, starts refusing non-finite maps
    (attacks would die on one inf instead of seeing it): the rank measures check, it does not."""
    out = l1_distance(torch.tensor([[math.inf, 0.0]]), torch.zeros(1, 2))
    assert out.tolist() == [math.inf]
