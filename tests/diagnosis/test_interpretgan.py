"""InterpretGAN: brief training on digits gives class-consistent images; losses move;
checkpoints load weights-only and resume exactly; contracts; bad input."""

from __future__ import annotations

import math

import pytest
import torch

from underfire.core.errors import CheckpointError
from underfire.diagnosis import (
    InterpretGAN,
    InterpretGANConfig,
    evaluate_interpretgan,
    layer_vulnerability,
    train_interpretgan,
)


@pytest.mark.slow  # shares the ~10 s small_gan fixture
def test_generated_images_keep_the_source_class(small_gan, digits_model, digits_splits) -> None:
    """Fails if the information loss (FVU) is not Σ‖x̂ − x‖² / Σ‖x − x̄‖² of the generated
    images (e.g. infinite, NaN, or computed against the wrong images), or if the generated
    images lose the source's class."""
    gan, _ = small_gan
    test = digits_splits["test"]
    stats = evaluate_interpretgan(gan, digits_model, test.x, test.y)
    generated = gan.generate(digits_model, test.x)
    x = test.x.double().flatten(1)
    spread = (x - x.mean(0)).pow(2).sum()
    # measured after 100 steps (batch 32, width 32, seed 0): the classifier gives 91.6% (pool1)
    # and 93.6% (pool2) of the generated images the source image's class; chance is 10%
    for layer in gan.layers:
        assert stats[layer]["consistency"] > 0.75, stats
        fvu = stats[layer]["fvu"]
        assert math.isfinite(fvu) and fvu > 0, stats
        error = (generated[layer].double().flatten(1) - x).pow(2).sum()
        assert fvu == pytest.approx(float(error / spread), rel=1e-6), stats
    images = gan.generate(digits_model, test.x[:8])
    for v in images.values():
        assert v.shape == test.x[:8].shape and float(v.min()) >= 0 and float(v.max()) <= 1


@pytest.mark.slow  # shares the ~10 s small_gan fixture
def test_losses_are_finite_and_move(small_gan) -> None:
    _, history = small_gan
    first, last = history[0], history[-1]
    for key in ("d_loss", "g_loss", "g_adv", "feature", "prediction", "rec"):
        assert all(torch.isfinite(torch.tensor(h[key])) for h in history), key
    assert last["g_loss"] < 0.7 * first["g_loss"]
    assert last["d_loss"] != first["d_loss"] and last["g_adv"] != first["g_adv"]


@pytest.mark.slow  # shares the ~10 s small_gan fixture
def test_information_loss_from_the_generators(small_gan, digits_model, digits_adv) -> None:
    gan, _ = small_gan
    x, y, x_adv = digits_adv
    with pytest.warns(UserWarning, match="at least 3 layers"):
        r = layer_vulnerability(digits_model, x, x_adv, y=y, interpretgan=gan)
    assert r.layers == gan.layers and r.information_source == "interpretgan"
    stats = evaluate_interpretgan(gan, digits_model, x)
    assert r.information_loss == pytest.approx([stats[n]["fvu"] for n in gan.layers], rel=1e-6)
    with pytest.raises(ValueError, match="no generator"):
        layer_vulnerability(digits_model, x, x_adv, ["net.features.block1"], interpretgan=gan)


@pytest.mark.slow  # shares the ~10 s small_gan fixture
def test_save_load_weights_only(small_gan, digits_model, digits_splits, tmp_path) -> None:
    gan, _ = small_gan
    x = digits_splits["test"].x[:6]
    path = gan.save(tmp_path / "g.pt")
    loaded = InterpretGAN.load(path)
    a, b = gan.generate(digits_model, x), loaded.generate(digits_model, x)
    for n in gan.layers:
        assert torch.equal(a[n], b[n])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        InterpretGAN.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not found"):
        InterpretGAN.load(tmp_path / "missing.pt")


def test_resume_is_exact_and_model_untouched(digits_model, digits_splits, tmp_path) -> None:
    train = digits_splits["train"].subset(200)
    cfg = dict(batch_size=16, width=8, discriminator_width=8, checkpoint_every=3, seed=1)
    layers = ["net.features.pool2"]
    state = {k: v.clone() for k, v in digits_model.state_dict().items()}
    grads = [p.grad for p in digits_model.parameters()]
    full, _ = train_interpretgan(digits_model, train, layers, InterpretGANConfig(steps=6, **cfg))
    path = tmp_path / "gan.pt"
    train_interpretgan(
        digits_model, train, layers, InterpretGANConfig(steps=3, **cfg), checkpoint=path
    )
    resumed, history = train_interpretgan(
        digits_model, train, layers, InterpretGANConfig(steps=6, **cfg), checkpoint=path
    )
    for k, v in full.generators[layers[0]].state_dict().items():
        assert torch.allclose(v, resumed.generators[layers[0]].state_dict()[k], atol=1e-6), k
    assert resumed.meta["steps"] == 6
    assert all(torch.equal(v, state[k]) for k, v in digits_model.state_dict().items())
    assert not digits_model.training
    assert all(p.grad is g for p, g in zip(digits_model.parameters(), grads, strict=True))
    assert all(p.requires_grad for p in digits_model.parameters())
    with pytest.raises(CheckpointError, match="different InterpretGAN run"):
        train_interpretgan(
            digits_model,
            train,
            layers,
            InterpretGANConfig(steps=6, **(cfg | {"seed": 2})),
            checkpoint=path,
        )


@pytest.mark.slow  # shares the ~10 s small_gan fixture
def test_bad_input(digits_model, digits_splits, small_gan) -> None:
    gan, _ = small_gan
    with pytest.raises(KeyError, match="no layer"):
        train_interpretgan(
            digits_model, digits_splits["train"], ["net.nope"], InterpretGANConfig(steps=1)
        )
    with pytest.raises(ValueError, match="steps must be"):
        InterpretGANConfig(steps=0)
    with pytest.raises(ValueError, match="no generator"):
        gan.decode("net.features.block1", torch.zeros(2, 32, 8, 8))
    with pytest.raises(ValueError, match="features of shape"):
        gan.decode("net.features.pool2", torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("feature_shape", "image_shape"),
    [
        ((64, 2, 2), (1, 8, 8)),  # ross-cnn pool2 on digits
        ((1024,), (1, 8, 8)),  # its hidden FC layer
        ((32, 14, 14), (1, 28, 28)),  # ross-cnn pool1 on MNIST
        ((64, 8, 8), (3, 32, 32)),  # resnet-small stage3 on CIFAR-10
        ((10,), (3, 32, 32)),  # logits
        ((16, 32, 32), (3, 32, 32)),  # same resolution as the image
    ],
)
def test_networks_are_sized_by_the_image(feature_shape, image_shape) -> None:
    from underfire.diagnosis import Discriminator, FeatureGenerator

    gen = FeatureGenerator(feature_shape, image_shape, width=8).eval()
    with torch.no_grad():
        out = gen(torch.rand(3, *feature_shape))
    assert out.shape == (3, *image_shape) and 0 <= float(out.min()) and float(out.max()) <= 1
    with torch.no_grad():
        assert Discriminator(image_shape, width=8)(out).shape == (3,)
