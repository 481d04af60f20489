"""The CNN of Ross & Doshi-Velez (AAAI 2018), with a max- or average-pooling variant.

conv 5×5×32 → BN → ReLU → pool 2 → conv 5×5×64 → BN → ReLU → pool 2 → FC 1024 → BN → ReLU
→ dropout → FC K. Padding keeps spatial size before pooling, so 28×28 gives a 7×7×64 map
and 8×8 (digits) a 2×2×64 one.

Initialization (``init``): ``"paper"`` (the default) is the authors' — their network is built
from TF-slim layers, whose default initializer is Glorot-uniform (Glorot & Bengio 2010) with
zero biases; ``"torch"`` keeps PyTorch's (Kaiming-uniform with a = √5, which gives the logit
layer weights about 2.4× smaller). The choice matters for input-gradient regularization at
the paper's strength: from PyTorch's init the optimizer settles into a flat-logit solution
whose accuracy *falls* during training, from Glorot's it rises. Normal training is unaffected
either way (docs/ross2018.md has the measurements).
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
        init: Literal["paper", "torch"] = "paper",
    ) -> None:
        if input_size < 4:
            raise ValueError(
                f"input_size must be at least 4 for two 2×2 poolings, got {input_size}"
            )
        if init not in ("paper", "torch"):
            raise ValueError(
                f"init must be 'paper' (Glorot-uniform, TF-slim) or 'torch', got {init!r}"
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
        self.init = init
        if init == "paper":
            _glorot_uniform(self)


def _glorot_uniform(model: nn.Module) -> None:
    """TF-slim's defaults for conv and fully connected layers: Glorot-uniform weights, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
