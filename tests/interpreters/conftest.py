"""Fixtures for the interpreter tests: small GAP→FC networks and a float64 net for gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.models import ImageClassifier, Normalize, create_model


class TinyGapNet(ImageClassifier):
    """conv → tanh → conv (target layer, pre-activation) → ReLU → GAP → FC.

    No ReLU lies upstream of the target layer, so with the smooth ReLU on, autograd's second
    derivative of a gradient map is the true derivative of the map as computed (the smooth
    backward h only enters as a factor, its derivative h' is exact): gradcheck is meaningful.
    """

    target_layer = "net.features"

    def __init__(self, channels: int = 1, side: int = 5, classes: int = 3) -> None:
        net = nn.Sequential()
        net.add_module(
            "features",
            nn.Sequential(
                nn.Conv2d(channels, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 4, 3, padding=1)
            ),
        )
        net.add_module(
            "head",
            nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)),
        )
        super().__init__(
            Normalize([0.5] * channels, [0.5] * channels), net, (channels, side, side), classes
        )


@pytest.fixture(scope="module")
def tiny64() -> TinyGapNet:
    torch.manual_seed(3)
    return TinyGapNet().double().eval()


@pytest.fixture(scope="module")
def gap_model() -> ImageClassifier:
    """A random ResNet-8 (GAP → FC) on 1×16×16 inputs, 5 classes, eval mode."""
    torch.manual_seed(0)
    model = create_model(
        "resnet-small", depth=8, width=8, in_channels=1, input_size=16, num_classes=5
    )
    # Non-trivial BN statistics so that eval mode is not the identity.
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.rand(32, 1, 16, 16))
    return model.eval()


@pytest.fixture(scope="module")
def gap_x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 16, 16, generator=g)


@pytest.fixture(scope="session")
def digits_small(digits_splits):
    """A ross-cnn (hidden 64) trained on digits, smaller and faster to train than the shared
    ``digits_model`` fixture; eval mode. Do not modify it."""
    from underfire.models import model_for_dataset
    from underfire.train import TrainConfig, Trainer

    model = model_for_dataset("ross-cnn", "digits", hidden=64)
    Trainer(model, config=TrainConfig(epochs=8, batch_size=64, lr=2e-3, seed=0)).fit(
        digits_splits["train"]
    )
    return model.eval()
