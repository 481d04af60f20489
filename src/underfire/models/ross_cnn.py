"""The CNN of Ross & Doshi-Velez (AAAI 2018), with a max- or average-pooling variant.

conv 5×5×32 → BN → ReLU → pool 2 → conv 5×5×64 → BN → ReLU → pool 2 → FC 1024 → BN → ReLU
→ dropout → FC K. Padding keeps spatial size before pooling, so 28×28 gives a 7×7×64 map
and 8×8 (digits) a 2×2×64 one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from underfire.models.base import MODELS, ImageClassifier, default_normalization


def _pool(kind: str) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(2)
    if kind == "avg":
        return nn.AvgPool2d(2)
    raise ValueError(f"pooling must be 'max' or 'avg', got {kind!r}")


@MODELS.register("ross-cnn")
class RossCNN(ImageClassifier):
    target_layer = "net.features.block2"

    def __init__(
        self,
        *,
        in_channels: int = 1,
        input_size: int = 28,
        num_classes: int = 10,
        pooling: Literal["max", "avg"] = "max",
        hidden: int = 1024,
        dropout: float = 0.5,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if input_size < 4:
            raise ValueError(
                f"input_size must be at least 4 for two 2×2 poolings, got {input_size}"
            )

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 5, padding=2), nn.BatchNorm2d(cout), nn.ReLU()
            )

        features = nn.Sequential()
        features.add_module("block1", block(in_channels, 32))
        features.add_module("pool1", _pool(pooling))
        features.add_module("block2", block(32, 64))
        features.add_module("pool2", _pool(pooling))
        side = input_size // 4
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        net = nn.Sequential()
        net.add_module("features", features)
        net.add_module("classifier", classifier)
        super().__init__(
            default_normalization(in_channels, mean, std),
            net,
            (in_channels, input_size, input_size),
            num_classes,
        )
