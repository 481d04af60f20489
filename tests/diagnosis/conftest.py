"""Fixtures of the diagnosis tests: a digits classifier (from tests/conftest.py) and PGD examples."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def digits_adv(digits_model, digits_splits):
    """120 clean test digits, their labels and PGD (ε = 0.1) versions."""
    from underfire.attacks import PGD

    test = digits_splits["test"]
    x, y = test.x[:120], test.y[:120]
    x_adv = PGD(eps=0.1, steps=10, seed=0)(digits_model, x, y)
    return x, y, x_adv


@pytest.fixture(scope="session")
def small_gan(digits_model, digits_splits):
    """An InterpretGAN on two layers of the digits model, trained briefly (~100 steps)."""
    from underfire.diagnosis import InterpretGANConfig, train_interpretgan

    torch.manual_seed(0)
    return train_interpretgan(
        digits_model,
        digits_splits["train"],
        ["net.features.pool1", "net.features.pool2"],
        InterpretGANConfig(steps=100, batch_size=32, width=32, seed=0),
    )
