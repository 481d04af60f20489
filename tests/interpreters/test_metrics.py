"""Map metrics of ADV² (L1, top-k IoU, rank correlation), against scipy and hand values."""

from __future__ import annotations

import pytest
import torch

from underfire.metrics import l1_distance, map_metrics, rank, spearman, topk_iou, topk_mask


def test_l1_distance_hand_values():
    a = torch.zeros(2, 1, 2, 2)
    b = torch.tensor([[[[1.0, 0, 0, 0]]], [[[1.0, 1, 1, 1]]]]).view(2, 1, 2, 2)
    torch.testing.assert_close(l1_distance(a, b), torch.tensor([0.25, 1.0]))
    with pytest.raises(ValueError, match="same shape"):
        l1_distance(a, b[:1])


def test_topk_iou_hand_values():
    a = torch.tensor([[4.0, 3, 2, 1, 0, 0, 0, 0, 0, 0]])
    b = torch.tensor([[4.0, 0, 2, 1, 3, 0, 0, 0, 0, 0]])
    assert topk_mask(a, 0.2).sum() == 2
    # top-20 %: {0,1} vs {0,4} → 1/3; top-40 %: {0,1,2,3} vs {0,2,3,4} → 3/5
    torch.testing.assert_close(topk_iou(a, b, [0.2, 0.4]), torch.tensor([(1 / 3 + 3 / 5) / 2]))
    torch.testing.assert_close(topk_iou(a, a), torch.tensor([1.0]))
    torch.testing.assert_close(topk_iou(a, b, 1.0), torch.tensor([1.0]))
    with pytest.raises(ValueError):
        topk_iou(a, b, [0.0])


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 1, 6, 6, generator=g)
    b = a + 0.5 * torch.rand(5, 1, 6, 6, generator=g)
    a[:, :, :2] = 0.5  # ties
    b[1] = (b[1] * 4).round()
    ours = spearman(a, b)
    ref = torch.tensor(
        [stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy())[0] for i in range(5)],
        dtype=torch.float32,
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert spearman(a, torch.ones_like(a)).eq(0).all()
    torch.testing.assert_close(
        rank(torch.tensor([[3.0, 1.0, 3.0, 2.0]])), torch.tensor([[3.5, 1.0, 3.5, 2.0]])
    )


def test_map_metrics_summary_and_l1_differentiable():
    a = torch.rand(3, 1, 4, 4, requires_grad=True)
    b = torch.rand(3, 1, 4, 4)
    l1_distance(a, b).sum().backward()
    assert a.grad is not None
    summary = map_metrics(a.detach(), a.detach())
    assert summary == {"l1": 0.0, "iou": 1.0, "spearman": pytest.approx(1.0)}
