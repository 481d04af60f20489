"""torchvision ResNet-50 and DenseNet-169 for ImageNet, wrapped to take [0, 1] inputs.

Weights: ``None`` leaves them random; a path loads a torchvision state dict (``weights_only``);
``"imagenet"`` loads torchvision's cached file (``torch.hub.get_dir()/checkpoints``) and fails
with the expected file name when it is absent; ``"auto"`` uses the cache when present and
warns otherwise. Nothing is downloaded.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
import torchvision

from underfire.models.base import MODELS, ImageClassifier, Normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# File names torchvision uses for its ImageNet weights (IMAGENET1K_V1) in the hub cache.
CACHE_FILES = {"resnet50": "resnet50-0676ba61.pth", "densenet169": "densenet169-b2777c0a.pth"}
_DOWNLOAD_URL = "https://download.pytorch.org/models/{file}"
# Old DenseNet checkpoints name layers "norm.1"; torchvision's modules are "norm1".
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from underfire.core.errors import CheckpointError

    if not path.exists():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(f"{path} is not a loadable state dict ({err})") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return {
        _DENSENET_OLD_KEY.sub(lambda m: m.group(1) + m.group(2), k): v for k, v in state.items()
    }


def _resolve_weights(arch: str, weights: str | Path | None) -> Path | None:
    if weights is None or weights == "none":
        return None
    if weights in ("imagenet", "auto"):
        cached = Path(torch.hub.get_dir()) / "checkpoints" / CACHE_FILES[arch]
        if cached.exists():
            return cached
        if weights == "imagenet":
            raise FileNotFoundError(
                f"ImageNet weights for {arch} not found at {cached}; download "
                f"{_DOWNLOAD_URL.format(file=CACHE_FILES[arch])} there or pass a file path"
            )
        warnings.warn(
            f"no cached ImageNet weights for {arch} ({cached}); using random weights", stacklevel=3
        )
        return None
    return Path(weights)


class TorchvisionClassifier(ImageClassifier):
    fixed_input_size = False  # global average pooling: any image size of at least 32×32

    def __init__(
        self, arch: str, *, num_classes: int = 1000, weights: str | Path | None = None
    ) -> None:
        builders = {
            "resnet50": torchvision.models.resnet50,
            "densenet169": torchvision.models.densenet169,
        }
        net = builders[arch](weights=None, num_classes=num_classes)
        super().__init__(Normalize(IMAGENET_MEAN, IMAGENET_STD), net, (3, 224, 224), num_classes)
        self.target_layer = "net.layer4" if arch == "resnet50" else "net.features"
        path = _resolve_weights(arch, weights)
        if path is not None:
            state = _load_state_dict(path)
            try:
                self.net.load_state_dict(state)
            except RuntimeError as err:
                from underfire.core.errors import CheckpointError

                raise CheckpointError(
                    f"{path} does not match torchvision's {arch}: {str(err)[:300]}"
                ) from err


@MODELS.register("resnet50")
def resnet50(
    *, num_classes: int = 1000, weights: str | Path | None = None
) -> TorchvisionClassifier:
    return TorchvisionClassifier("resnet50", num_classes=num_classes, weights=weights)


@MODELS.register("densenet169")
def densenet169(
    *, num_classes: int = 1000, weights: str | Path | None = None
) -> TorchvisionClassifier:
    # torchvision applies DenseNet's last ReLU functionally: "net.features" is the map before it.
    return TorchvisionClassifier("densenet169", num_classes=num_classes, weights=weights)
