import pytest
import torch

from underfire.core.registry import Registry, UnknownNameError
from underfire.core.validation import check_images, check_labels, check_same_device, resolve_device


def test_registry_create_names_and_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.register("one")(lambda scale=1: 1 * scale)
    assert reg.create("One", scale=3) == 3
    assert reg.names() == ["one"] and "one" in reg
    with pytest.raises(ValueError, match="already registered"):
        reg.register("one")(lambda: 2)
    with pytest.raises(UnknownNameError, match="unknown thing 'two'; choose one of: one"):
        reg.create("two")


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        ([1.0], TypeError, "torch.Tensor"),
        (torch.rand(1, 8, 8), ValueError, "unsqueeze"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), TypeError, "x.float"),
        (torch.full((1, 1, 8, 8), 2.0), ValueError, r"values in \[0, 1\]"),
        (torch.full((1, 1, 8, 8), float("nan")), ValueError, "NaN"),
    ],
)
def test_check_images_rejects_bad_input(x, error, match):
    with pytest.raises(error, match=match):
        check_images(x)


def test_check_images_accepts_valid():
    x = torch.rand(2, 3, 4, 4)
    assert check_images(x) is x


def test_check_labels():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        check_labels(torch.zeros(2, dtype=torch.long), 3)
    with pytest.raises(TypeError, match="integer"):
        check_labels(torch.zeros(3), 3)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        check_labels(torch.tensor([0, 10, 1]), 3, num_classes=10)


def test_device_checks():
    model = torch.nn.Linear(2, 2)
    check_same_device(model, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="meta"):
        check_same_device(model, torch.zeros(1, 2, device="meta"))
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cpu"):
            resolve_device("cuda")
