"""PGD's early stop: each sample keeps the iterate of the first step at which it was fooled
(misclassified, or classified as the target), exactly as a run of that many steps."""

from __future__ import annotations

import pytest
import torch

from underfire.attacks import BIM


def _trajectory_stop(model, x, labels, steps, targeted, t=None):
    """Per sample, BIM's iterate at the first step k ≤ steps where it is fooled (else the last)."""
    out = BIM(eps=0.3, step_size=0.01, steps=steps)(model, x, labels, t)
    done = torch.zeros(x.shape[0], dtype=torch.bool)
    for k in range(steps + 1):
        xk = x if k == 0 else BIM(eps=0.3, step_size=0.01, steps=k)(model, x, labels, t)
        with torch.no_grad():
            pred = model(xk).argmax(1)
        fooled = (pred == t) if targeted else (pred != labels)
        first = fooled & ~done
        out[first] = xk[first]
        done |= fooled
    return out, done


@pytest.mark.parametrize("targeted", [False, True])
def test_each_sample_stops_at_the_first_step_that_fools_the_model(tiny_model, batch, targeted):
    """Fails if early stop is not applied, uses the untargeted test for a targeted attack, or
    freezes samples that are not yet fooled."""
    x, _ = batch
    with torch.no_grad():
        logits = tiny_model(x)
    y = logits.argmax(1)  # every sample starts correctly classified
    t = logits.topk(2, 1).indices[:, 1] if targeted else None  # the runner-up class
    steps = 8
    expected, done = _trajectory_stop(tiny_model, x, y, steps, targeted, t)
    assert 0 < int(done.sum()) < x.shape[0]  # some stop early, some run to the end
    got = BIM(eps=0.3, step_size=0.01, steps=steps, early_stop=True)(tiny_model, x, y, t)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
