"""Models by name. Every model takes images in [0, 1], normalizes inside and returns logits.

>>> from underfire.models import create_model, model_for_dataset
>>> model = create_model("ross-cnn", pooling="avg")                  # 1×28×28, 10 classes
>>> model = model_for_dataset("ross-cnn", "digits")                  # sized for 1×8×8 digits
"""

from __future__ import annotations

from typing import Any

from underfire.data import dataset_info
from underfire.models.base import MODELS, ImageClassifier, Normalize, get_layer, layer_name
from underfire.models.cifar_nets import SmallDenseNet, SmallResNet
from underfire.models.imagenet_nets import TorchvisionClassifier, densenet169, resnet50
from underfire.models.ross_cnn import RossCNN

__all__ = [
    "MODELS",
    "ImageClassifier",
    "Normalize",
    "RossCNN",
    "SmallDenseNet",
    "SmallResNet",
    "TorchvisionClassifier",
    "create",
    "create_model",
    "densenet169",
    "get_layer",
    "layer_name",
    "model_for_dataset",
    "model_names",
    "names",
    "resnet50",
]

# Each model registers in MODELS where it is defined (importing its module above does).

# Models sized by the dataset (channels, side, classes, normalization) vs fixed ImageNet ones.
_SIZED = {"ross-cnn", "resnet-small", "densenet-small"}


def model_names() -> list[str]:
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> ImageClassifier:
    """Build a registered model; ``model.config`` records how, for checkpoints."""
    model = MODELS.create(name, **kwargs)
    model.config = {"name": name, "kwargs": dict(kwargs)}
    return model


def model_for_dataset(name: str, dataset: str, **kwargs: Any) -> ImageClassifier:
    """Build ``name`` with the input shape, class count and normalization of ``dataset``."""
    MODELS.get(name)  # unknown names fail here, listing the known ones
    info = dataset_info(dataset)
    if name in _SIZED:
        channels, height, width = info.shape
        if height != width:
            raise ValueError(f"{name} needs square inputs, {dataset} has {height}×{width}")
        sized: dict[str, Any] = {
            "in_channels": channels,
            "input_size": height,
            "num_classes": info.num_classes,
        }
        if info.mean:
            sized |= {"mean": list(info.mean), "std": list(info.std)}
        kwargs = sized | kwargs
    elif info.shape != (3, 224, 224):
        raise ValueError(
            f"{name} is an ImageNet model (3×224×224); for {dataset} use one of {sorted(_SIZED)}"
        )
    return create_model(name, **kwargs)


# the verbs every registry package exposes (attacks, interpreters, defenses, data)
create = create_model
names = model_names
