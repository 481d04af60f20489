"""Small networks for 32×32 inputs: a CIFAR ResNet (He et al. 2016, §4.2) and a DenseNet-BC
(Huang et al. 2017). Both end in global average pooling → linear, so CAM applies directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from underfire.models.base import MODELS, ImageClassifier, default_normalization


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


@MODELS.register("resnet-small")
class SmallResNet(ImageClassifier):
    """ResNet-(6n+2) for 32×32 images; ``depth=20`` is ResNet-20 (0.27M parameters)."""

    target_layer = "net.stage3"

    def __init__(
        self,
        *,
        depth: int = 20,
        in_channels: int = 3,
        input_size: int = 32,
        num_classes: int = 10,
        width: int = 16,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 (8, 14, 20, 32, 44, 56, ...), got {depth}")
        n = (depth - 2) // 6
        net = nn.Sequential()
        net.add_module(
            "stem",
            nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
            ),
        )
        cin = width
        for stage, (cout, stride) in enumerate(
            [(width, 1), (2 * width, 2), (4 * width, 2)], start=1
        ):
            blocks = nn.Sequential(
                *[
                    _BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                    for i in range(n)
                ]
            )
            net.add_module(f"stage{stage}", blocks)
            cin = cout
        net.add_module("pool", nn.AdaptiveAvgPool2d(1))
        net.add_module("flatten", nn.Flatten())
        net.add_module("fc", nn.Linear(cin, num_classes))
        super().__init__(
            default_normalization(in_channels, mean, std),
            net,
            (in_channels, input_size, input_size),
            num_classes,
        )


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


@MODELS.register("densenet-small")
class SmallDenseNet(ImageClassifier):
    """DenseNet-BC for 32×32 images: three dense blocks, bottleneck layers, compression 0.5."""

    target_layer = "net.final"

    def __init__(
        self,
        *,
        layers_per_block: int = 6,
        growth: int = 12,
        in_channels: int = 3,
        input_size: int = 32,
        num_classes: int = 10,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if layers_per_block < 1 or growth < 1:
            raise ValueError("layers_per_block and growth must be positive")
        net = nn.Sequential()
        channels = 2 * growth
        net.add_module("stem", nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False))
        for b in range(1, 4):
            block = nn.Sequential()
            for i in range(layers_per_block):
                block.add_module(f"layer{i + 1}", _DenseLayer(channels, growth))
                channels += growth
            net.add_module(f"block{b}", block)
            if b < 3:
                out = channels // 2
                net.add_module(
                    f"transition{b}",
                    nn.Sequential(
                        nn.BatchNorm2d(channels),
                        nn.ReLU(),
                        nn.Conv2d(channels, out, 1, bias=False),
                        nn.AvgPool2d(2),
                    ),
                )
                channels = out
        net.add_module("final", nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU()))
        net.add_module("pool", nn.AdaptiveAvgPool2d(1))
        net.add_module("flatten", nn.Flatten())
        net.add_module("fc", nn.Linear(channels, num_classes))
        super().__init__(
            default_normalization(in_channels, mean, std),
            net,
            (in_channels, input_size, input_size),
            num_classes,
        )
