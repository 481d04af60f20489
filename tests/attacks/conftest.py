"""Fixtures for the attack tests: a tiny untrained CNN (fast) and one factory per attack."""

from __future__ import annotations

import pytest
import torch

from underfire.models import model_for_dataset

@pytest.fixture
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return model_for_dataset("ross-cnn", "digits", hidden=16).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g)
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # values on the box's faces
    return x, torch.randint(0, 10, (6,), generator=g)
