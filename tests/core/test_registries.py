"""Models, datasets and defenses register where they are defined, with the same verbs
(register, create, names, get) as attacks and interpreters; tests driven by the registries."""

from __future__ import annotations

import pytest
import torch

from underfire.attacks.base import ATTACKS
from underfire.core.registry import Registry, UnknownNameError
from underfire.data.base import DATASETS
from underfire.defenses.base import DEFENSES
from underfire.interpreters.base import INTERPRETERS
from underfire.models.base import MODELS


@pytest.mark.parametrize("registry", [ATTACKS, INTERPRETERS, MODELS, DATASETS, DEFENSES])
def test_one_registry_type_with_the_same_verbs(registry):
    assert isinstance(registry, Registry)
    assert registry.names() and registry.names() == sorted(registry.names())
    with pytest.raises(UnknownNameError, match="choose one of"):
        registry.get("no-such-entry")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.names()[0])(lambda: None)


def test_each_entry_is_registered_by_its_own_module():
    import underfire.data
    import underfire.defenses
    import underfire.models  # noqa: F401  (importing the packages registers everything)

    modules = {name: MODELS.get(name).__module__ for name in MODELS.names()}
    assert modules["ross-cnn"] == "underfire.models.ross_cnn"
    assert modules["resnet-small"] == modules["densenet-small"] == "underfire.models.cifar_nets"
    assert modules["resnet50"] == "underfire.models.imagenet_nets"
    assert DEFENSES.get("gradreg").__module__ == "underfire.defenses.gradient_regularization"
    assert DEFENSES.get("distillation").__module__ == "underfire.defenses.distillation"
    assert DEFENSES.get("both").__module__ == "underfire.defenses.adversarial_training"
    assert type(DATASETS.create("mnist")).__module__ == "underfire.data.idx"
    assert type(DATASETS.create("cifar10")).__module__ == "underfire.data.cifar"


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_from_its_registry_name(name):
    from underfire.models import create_model

    with torch.device("meta"):  # shapes only: fast even for the ImageNet models
        model = create_model(name)
    assert model.config == {"name": name, "kwargs": {}}
    assert model.num_classes >= 2 and len(model.input_shape) == 3


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_defense_builds_and_describes_itself(name):
    from underfire.defenses import create

    objective = create(name)
    assert callable(objective) and objective.config()["name"]
