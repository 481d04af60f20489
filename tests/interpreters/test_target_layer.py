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


# ---- a layer given as a module object (issue 24: Captum's and pytorch-grad-cam's way) ----


def _resnet_small() -> nn.Module:
    from underfire.models import create_model

    torch.manual_seed(0)
    return create_model(
        "resnet-small", depth=8, width=8, in_channels=1, input_size=16, num_classes=5
    ).eval()


def test_gradcam_takes_a_module_like_captum_layer_gradcam() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    from underfire.interpreters import GradCAM

    model = _resnet_small()
    x, y = torch.rand(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    # an earlier block than the declared one, so the module (not the default) is what is read
    name = "net.stage2"
    assert model.target_layer != name
    layer = model.net.stage2
    gradcam = GradCAM(target_layer=layer)
    ours = gradcam.attribute(model, x, y)
    ref = captum_attr.LayerGradCam(model, layer).attribute(
        x.clone(), target=y, relu_attributions=True
    )
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert gradcam.layer_used == name
    assert gradcam.config()["target_layer"] == name
    torch.testing.assert_close(ours, GradCAM(target_layer=name).attribute(model, x, y))
    assert not torch.equal(GradCAM().attribute(model, x, y), ours)


def test_cam_takes_a_module_and_names_the_layer_it_read() -> None:
    from underfire.interpreters import CAM

    model = _resnet_small()
    x, y = torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 2])
    declared = model.target_layer
    cam = CAM(target_layer=model.get_submodule(declared))
    torch.testing.assert_close(cam.attribute(model, x, y), CAM().attribute(model, x, y))
    assert cam.layer_used == declared
    default = CAM()
    default.attribute(model, x, y)
    assert default.layer_used == declared


def test_a_module_of_another_model_is_refused_with_its_fix() -> None:
    from underfire.interpreters import GradCAM

    model, other = _resnet_small(), _resnet_small()
    foreign = other.get_submodule(other.target_layer)
    with pytest.raises(KeyError, match="not a submodule"):
        GradCAM(target_layer=foreign)(model, torch.rand(1, 1, 16, 16))
    with pytest.raises(TypeError, match="name of a module .* or the module itself"):
        GradCAM(target_layer=3)  # type: ignore[arg-type]


def test_rts_trained_on_a_module_layer_saves_its_name(tmp_path) -> None:
    from underfire.interpreters.rts import RTS, RTSConfig, train_rts

    model = _resnet_small()
    x, y = torch.rand(16, 1, 16, 16), torch.randint(0, 5, (16,))
    layer = model.get_submodule(model.target_layer)
    rts, _ = train_rts(model, (x, y), RTSConfig(steps=2, batch_size=8, width=8), target_layer=layer)
    assert rts.target_layer == model.target_layer
    loaded = RTS.load(rts.save(tmp_path / "rts.pt"))
    torch.testing.assert_close(loaded(model, x[:2], y[:2]), rts(model, x[:2], y[:2]))
    unsaved = RTS(rts.network, target_layer=layer)
    with pytest.raises(ValueError, match="explain one batch first"):
        unsaved.save(tmp_path / "no.pt")
    unsaved(model, x[:2], y[:2])
    assert RTS.load(unsaved.save(tmp_path / "yes.pt")).target_layer == model.target_layer
