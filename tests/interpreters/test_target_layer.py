"""CAM methods on a model that names no target layer: the layer is found (declared inside a
wrapper, else the last module with a spatial 4-D output)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from underfire.interpreters import INTERPRETERS
from underfire.interpreters.cam import find_target_layer


class Wrapper(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)


def test_last_spatial_block_of_a_torchvision_resnet() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = Wrapper(torchvision.models.resnet18(num_classes=3)).eval()
    # the block, not its last ReLU; global pooling (1×1) is passed over
    assert find_target_layer(model, torch.rand(1, 3, 64, 64)) == "net.layer4"
    # at 32×32 layer4 is itself 1×1: layer3 is the last map with spatial extent
    assert find_target_layer(model, torch.rand(1, 3, 32, 32)) == "net.layer3"
    maps = INTERPRETERS.create("gradcam")(model, torch.rand(2, 3, 64, 64))
    assert maps.shape == (2, 1, 64, 64)


def test_layer_declared_by_a_wrapped_underfire_model() -> None:
    from underfire.models import create_model

    inner = create_model("ross-cnn", in_channels=1, input_size=8, num_classes=3, hidden=8)
    assert find_target_layer(Wrapper(inner), torch.rand(1, 1, 8, 8)) == (
        f"net.{inner.target_layer}"
    )


def test_a_model_without_feature_maps_is_refused() -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match="no layer with a 4-D"):
        find_target_layer(mlp, torch.rand(1, 3, 2, 2))
