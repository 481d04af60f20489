"""The InterpretGAN's networks: a generator per layer (features → image) and a
discriminator (image → real/fake logit), sized by the image (8×8 digits, 28×28 MNIST,
32×32 CIFAR-10). Training and checkpoints: :mod:`underfire.diagnosis.interpretgan`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["Discriminator", "FeatureGenerator"]


class FeatureGenerator(nn.Module):
    """Gₗ: features (N, *feature_shape) → images (N, C, H, W) in [0, 1].

    A (C', h, w) feature map enters through a 1×1 conv; any other shape is flattened and
    enters through a linear layer onto a ⌈H/4⌉×⌈W/4⌉ grid. Then nearest ×2 upsampling + 3×3
    conv + BN + ReLU blocks until the grid reaches the image size (at most 5), a 3×3 conv to
    the image channels, a bilinear resize when the sides do not match exactly, and a sigmoid.
    """

    def __init__(
        self, feature_shape: Sequence[int], image_shape: Sequence[int], *, width: int = 64
    ) -> None:
        super().__init__()
        self.feature_shape = tuple(int(s) for s in feature_shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        channels, height, width_px = self.image_shape
        if len(self.feature_shape) == 3:
            self.stem: nn.Module = nn.Sequential(
                nn.Conv2d(self.feature_shape[0], width, 1), nn.BatchNorm2d(width), nn.ReLU()
            )
            side = (self.feature_shape[1], self.feature_shape[2])
        else:
            side = (max(2, math.ceil(height / 4)), max(2, math.ceil(width_px / 4)))
            self.stem = nn.Sequential(
                nn.Flatten(),
                nn.Linear(math.prod(self.feature_shape), width * side[0] * side[1]),
                nn.Unflatten(1, (width, side[0], side[1])),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            )
        ups = min(5, max(0, math.ceil(math.log2(max(height / side[0], width_px / side[1], 1)))))
        blocks: list[nn.Module] = []
        for _ in range(ups):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(width, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        blocks += [
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        ]
        self.body = nn.Sequential(*blocks)
        self.config = {
            "feature_shape": list(self.feature_shape),
            "image_shape": list(self.image_shape),
            "width": width,
        }

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if tuple(features.shape[1:]) != self.feature_shape:
            raise ValueError(
                f"generator expects features of shape (N, {', '.join(map(str, self.feature_shape))}), "
                f"got {tuple(features.shape)}"
            )
        out = self.body(self.stem(features))
        if tuple(out.shape[-2:]) != self.image_shape[1:]:
            out = F.interpolate(
                out, size=self.image_shape[1:], mode="bilinear", align_corners=False
            )
        return torch.sigmoid(out)


class Discriminator(nn.Module):
    """Dₗ: images (N, C, H, W) → real/fake logits (N,). A 3×3 conv, then 4×4 stride-2 convs
    doubling the channels while the side exceeds 4, LeakyReLU(0.2), spectral normalization
    on every layer (keeps the adversarial game stable on small data), a linear read-out."""

    def __init__(self, image_shape: Sequence[int], *, width: int = 32) -> None:
        super().__init__()
        channels, height, width_px = (int(s) for s in image_shape)
        layers: list[nn.Module] = [
            spectral_norm(nn.Conv2d(channels, width, 3, padding=1)),
            nn.LeakyReLU(0.2),
        ]
        c, side = width, min(height, width_px)
        while side > 4:
            layers += [spectral_norm(nn.Conv2d(c, 2 * c, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c, side = 2 * c, side // 2
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n_out = self.features(torch.zeros(1, channels, height, width_px)).numel()
        self.head = spectral_norm(nn.Linear(n_out, 1))
        self.config = {"image_shape": [channels, height, width_px], "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)
