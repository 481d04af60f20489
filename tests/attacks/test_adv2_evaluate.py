"""ADV² over a dataset (evaluate_adv2): batch by batch, the records gathered exactly as one
call per batch gives them, a few examples kept with their maps, and the figure."""

from __future__ import annotations

import pytest
import torch

from underfire.attacks.adv2 import ADV2, adv2_figure, evaluate_adv2

FAST = dict(preset="small", eps=0.1, step_size=0.02, warm_steps=2, steps=3, lam=1.0, seed=0)


def test_evaluate_adv2_gathers_the_per_batch_records(tiny_model, batch):
    x, y = batch
    seen: list[tuple[int, int]] = []
    report = evaluate_adv2(
        ADV2("grad", **FAST),
        tiny_model,
        (x, y),
        target="next",
        batch_size=4,
        keep=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(4, 6), (6, 6)]
    attack = ADV2("grad", **FAST)
    first = attack(tiny_model, x[:4], y[:4], target="next")
    rec_a = attack.result
    attack(tiny_model, x[4:], y[4:], target="next")
    rec_b = attack.result
    assert rec_a is not None and rec_b is not None
    for key in ("target", "prediction", "success", "confidence", "l1", "iou"):
        expected = torch.cat([getattr(rec_a, key), getattr(rec_b, key)])
        torch.testing.assert_close(report.per_sample[key], expected, rtol=0, atol=0)
    assert report.summary["n"] == 6
    assert report.summary["l1"] == pytest.approx(float(report.per_sample["l1"].mean()))
    assert report.summary["success_rate"] == pytest.approx(
        float(report.per_sample["success"].float().mean())
    )
    torch.testing.assert_close(report.examples["x_adv"], first[:3], rtol=0, atol=0)
    assert report.examples["adv_map"].shape == (3, 1, 8, 8)
    results = report.to_dict()
    assert results["attack"]["name"] == "adv2" and results["interpreter"]["name"] == "grad"
    assert len(results["per_sample"]["iou"]) == 6
    fig = adv2_figure(report.examples)
    assert len(fig.axes) == 4 * 3


def test_evaluate_adv2_refuses_data_it_cannot_read(tiny_model, batch):
    x, y = batch
    attack = ADV2("grad", **FAST)
    with pytest.raises(TypeError, match=r"\.x and \.y"):
        evaluate_adv2(attack, tiny_model, [x, "labels"], target="next")
    with pytest.raises(ValueError, match="labels"):
        evaluate_adv2(attack, tiny_model, (x, y[:2]), target="next")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_adv2(attack, tiny_model, (x, y), target="next", batch_size=0)
