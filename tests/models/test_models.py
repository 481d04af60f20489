import pytest
import torch

from underfire.checkpoint import CheckpointError
from underfire.core.registry import UnknownNameError
from underfire.models import create_model, get_layer, model_for_dataset, model_names


def test_registry_names():
    assert set(model_names()) == {
        "ross-cnn",
        "resnet-small",
        "densenet-small",
        "resnet50",
        "densenet169",
    }
    with pytest.raises(UnknownNameError, match="choose one of"):
        create_model("vgg")


@pytest.mark.parametrize(
    ("name", "dataset", "shape"),
    [
        ("ross-cnn", "digits", (1, 8, 8)),
        ("ross-cnn", "mnist", (1, 28, 28)),
        ("resnet-small", "cifar10", (3, 32, 32)),
        ("densenet-small", "cifar10", (3, 32, 32)),
    ],
)
def test_small_models_give_logits(name, dataset, shape):
    model = model_for_dataset(name, dataset).eval()
    logits = model(torch.rand(3, *shape))
    assert logits.shape == (3, 10)
    assert get_layer(model, model.target_layer) is not None


def test_ross_cnn_pooling_variants_and_paper_architecture():
    maxed = create_model("ross-cnn", pooling="max")
    avg = create_model("ross-cnn", pooling="avg")
    assert isinstance(get_layer(maxed, "net.features.pool1"), torch.nn.MaxPool2d)
    assert isinstance(get_layer(avg, "net.features.pool1"), torch.nn.AvgPool2d)
    convs = [m for m in maxed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (5, 5))]
    fcs = [m for m in maxed.modules() if isinstance(m, torch.nn.Linear)]
    assert [f.out_features for f in fcs] == [1024, 10] and fcs[0].in_features == 7 * 7 * 64
    with pytest.raises(ValueError, match="pooling must be"):
        create_model("ross-cnn", pooling="min")


def test_normalization_is_inside_the_model():
    model = model_for_dataset("ross-cnn", "mnist")
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.1307]))
    x = torch.full((1, 1, 28, 28), 0.1307)
    assert torch.allclose(model.normalize(x), torch.zeros_like(x), atol=1e-6)


def test_wrong_input_shape_is_explained():
    model = model_for_dataset("ross-cnn", "digits")
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1, 8, 8\)"):
        model(torch.rand(2, 3, 8, 8))


def test_get_layer_lists_layers():
    with pytest.raises(KeyError, match="net.features"):
        get_layer(create_model("ross-cnn"), "conv9")


def test_imagenet_model_rejects_small_dataset():
    with pytest.raises(ValueError, match="ImageNet model"):
        model_for_dataset("resnet50", "mnist")


@pytest.mark.parametrize("arch", ["resnet50", "densenet169"])
def test_imagenet_models_load_torchvision_weights_from_a_file(arch, tmp_path):
    import torchvision

    reference = getattr(torchvision.models, arch)(weights=None).eval()
    state = reference.state_dict()
    if arch == "densenet169":
        # torchvision's published DenseNet files use the old "norm.1" key style
        state = {
            k.replace("denselayer1.norm1.", "denselayer1.norm.1."): v for k, v in state.items()
        }
    path = tmp_path / f"{arch}.pth"
    torch.save(state, path)
    model = create_model(arch, weights=str(path)).eval()
    x = torch.rand(1, 3, 224, 224)
    normalized = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(normalized), atol=1e-4)


def test_imagenet_weights_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth"):
        create_model("resnet50", weights="imagenet")
    with pytest.warns(UserWarning, match="random weights"):
        create_model("resnet50", weights="auto")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable state dict"):
        create_model("resnet50", weights=str(bad))
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(CheckpointError, match="does not match"):
        create_model("resnet50", weights=str(bad))
