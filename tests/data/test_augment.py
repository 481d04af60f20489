"""Crop-flip augmentation: exact crops and flips, seeded per (seed, epoch, sample), the same
images whatever the batching or sharding."""

import pytest
import torch

from underfire.data import ImageDataset, load_dataset
from underfire.data.augment import AUGMENTATIONS, PAD, crop_flip, epoch_augmentation
from underfire.train import TrainConfig, batches


def _image() -> torch.Tensor:
    """One 1-channel 3×3 image holding 1…9 (no zero, so padding is visible)."""
    return (torch.arange(9, dtype=torch.float32) + 1).reshape(1, 1, 3, 3)


@pytest.mark.parametrize(
    ("offset", "flip", "expected"),
    [
        # top-left corner of the padded image: one row and column of zeros come in
        ((0, 0), False, [[0, 0, 0], [0, 1, 2], [0, 4, 5]]),
        ((0, 0), True, [[0, 0, 0], [2, 1, 0], [5, 4, 0]]),
        ((2, 2), False, [[5, 6, 0], [8, 9, 0], [0, 0, 0]]),
        ((2, 1), True, [[6, 5, 4], [9, 8, 7], [0, 0, 0]]),  # rows 2–4, columns 1–3, mirrored
        ((1, 1), False, [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),  # centred: the image itself
        ((1, 1), True, [[3, 2, 1], [6, 5, 4], [9, 8, 7]]),  # centred and mirrored
        ((1, 0), False, [[0, 1, 2], [0, 4, 5], [0, 7, 8]]),
    ],
)
def test_crop_and_flip_are_exact_on_a_tiny_image(offset, flip, expected):
    out = crop_flip(_image(), torch.tensor([offset]), torch.tensor([flip]), pad=1)
    assert torch.equal(out, torch.tensor(expected, dtype=torch.float32).reshape(1, 1, 3, 3))


def test_each_image_and_channel_gets_its_own_crop():
    x = torch.stack([_image()[0].repeat(2, 1, 1), 10 * _image()[0].repeat(2, 1, 1)])
    x[:, 1] *= -1  # a second channel that differs from the first
    offsets, flips = torch.tensor([[1, 1], [0, 2]]), torch.tensor([True, False])
    before = x.clone()
    out = crop_flip(x, offsets, flips, pad=1)
    assert torch.equal(out[0], x[0].flip(-1))  # centred and mirrored
    shifted = torch.tensor([[0, 0, 0], [20, 30, 0], [50, 60, 0]], dtype=torch.float32)
    assert torch.equal(out[1, 0], shifted) and torch.equal(out[1, 1], -shifted)
    assert torch.equal(x, before)  # the input is left as it was


def test_draws_depend_on_seed_and_epoch_only():
    a = epoch_augmentation("crop-flip", 500, seed=3, epoch=2)
    b = epoch_augmentation("crop-flip", 500, seed=3, epoch=2)
    assert a is not None and b is not None
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.flips, b.flips)
    assert a.offsets.min() == 0 and a.offsets.max() == 2 * PAD  # every offset can occur
    assert 0.4 < a.flips.float().mean() < 0.6
    for other in (dict(seed=4, epoch=2), dict(seed=3, epoch=3)):
        c = epoch_augmentation("crop-flip", 500, **other)
        assert c is not None and not torch.equal(a.offsets, c.offsets)
    assert epoch_augmentation("none", 500, seed=3, epoch=2) is None


def test_unknown_augmentation_is_one_clear_error():
    with pytest.raises(
        ValueError, match="augment must be one of 'none', 'crop-flip', got 'cutout'"
    ):
        TrainConfig(augment="cutout")
    with pytest.raises(ValueError, match=r"needs image batches \(N, C, H, W\)"):
        crop_flip(torch.zeros(4, 10), torch.zeros(4, 2, dtype=torch.long), torch.zeros(4).bool())


def test_the_train_command_offers_every_augmentation():
    import argparse

    from underfire.commands import train

    subparsers = argparse.ArgumentParser().add_subparsers()
    train.register(subparsers)
    actions = subparsers.choices["train"]._actions
    option = next(a for a in actions if "--augment" in a.option_strings)
    assert tuple(option.choices) == AUGMENTATIONS and option.default == "none"


@pytest.fixture(scope="module")
def digits_train() -> ImageDataset:
    data = load_dataset("digits", "train")
    assert isinstance(data, ImageDataset)
    return data


def _epoch(data, batch_size: int, *, epoch: int = 1, part=(0, 1), augment="crop-flip"):
    return list(
        batches(data, batch_size, shuffle=True, seed=5, epoch=epoch, part=part, augment=augment)
    )


def test_augmented_batches_change_the_images_as_the_draws_say(digits_train):
    plain, augmented = _epoch(digits_train, 64, augment="none"), _epoch(digits_train, 64)
    draws = epoch_augmentation("crop-flip", len(digits_train), seed=5, epoch=1)
    assert draws is not None
    order = torch.randperm(
        len(digits_train), generator=torch.Generator().manual_seed(5 * 100_003 + 1)
    )
    start = 0
    for (x0, y0), (x1, y1) in zip(plain, augmented, strict=True):
        idx = order[start : start + len(y0)]
        start += len(y0)
        assert torch.equal(y0, y1)
        assert torch.equal(x1, crop_flip(x0, draws.offsets[idx], draws.flips[idx]))
    changed = torch.cat(
        [(a[0] != b[0]).flatten(1).any(1) for a, b in zip(plain, augmented, strict=True)]
    )
    assert changed.float().mean() > 0.9  # only centred, unmirrored crops (1 in 162) stay
    assert torch.equal(
        torch.cat([x for x, _ in _epoch(digits_train, 64)]), torch.cat([x for x, _ in augmented])
    )
    other_epoch = torch.cat([x for x, _ in _epoch(digits_train, 64, epoch=2)])
    assert not torch.equal(other_epoch, torch.cat([x for x, _ in augmented]))


def test_two_shards_together_are_the_single_process_batch(digits_train):
    whole = _epoch(digits_train, 50)
    first, second = _epoch(digits_train, 50, part=(0, 2)), _epoch(digits_train, 50, part=(1, 2))
    assert len(whole) == len(first) == len(second)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, first, second, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_datasets_without_tensors_are_augmented_alike(digits_train):
    class _ItemByItem(torch.utils.data.Dataset):
        def __len__(self):
            return len(digits_train)

        def __getitem__(self, i):
            return digits_train.x[i], digits_train.y[i]

    for (x, y), (xi, yi) in zip(_epoch(digits_train, 64), _epoch(_ItemByItem(), 64), strict=True):
        assert torch.equal(x, xi) and torch.equal(y, yi)
