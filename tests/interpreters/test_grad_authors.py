"""GRAD as ADV²'s authors compute it: the gradient of the loss, max over channels, pooled."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from underfire.interpreters import Saliency


def test_loss_gradient_is_the_gradient_of_the_cross_entropy(gap_model) -> None:
    torch.manual_seed(0)
    x, t = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    xg = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(F.cross_entropy(gap_model(xg), t, reduction="sum"), xg)
    ours = Saliency(score="loss", absolute=False).attribute(gap_model, x, t)
    torch.testing.assert_close(ours, ref)
    # not the logit's gradient: the loss also pushes the other classes down
    logit = Saliency(absolute=False).attribute(gap_model, x, t)
    assert not torch.allclose(ours, -logit)


def test_pooled_map_is_the_cell_average_repeated_then_normalized(gap_model) -> None:
    torch.manual_seed(1)
    x, t = torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 2])
    raw = Saliency(score="loss").attribute(gap_model, x, t)  # |grad|, one channel
    cells = F.avg_pool2d(raw, 2)
    lo = cells.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = cells.flatten(1).amax(1).view(-1, 1, 1, 1)
    expected = ((cells - lo) / (hi - lo)).repeat_interleave(2, -2).repeat_interleave(2, -1)
    grad = Saliency(score="loss", pool=2)
    torch.testing.assert_close(grad(gap_model, x, t), expected, rtol=1e-5, atol=1e-6)
    assert Saliency.authors(32).pool == 2 and Saliency.authors(224).pool == 4
    assert Saliency.authors(8).pool == 1 and Saliency.authors(32).score == "loss"
    with pytest.raises(ValueError, match="pool=3 must divide the image size 16×16"):
        Saliency(pool=3)(gap_model, x, t)
    with pytest.raises(ValueError, match="score must be 'logit' or 'loss'"):
        Saliency(score="prob")  # type: ignore[arg-type]
