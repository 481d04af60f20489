"""Deterministic, seeded train/validation/test splits."""

from __future__ import annotations

from collections.abc import Callable

import torch

SPLITS = ("train", "val", "test")
# Validation is carved from a data set's official training part; it never touches the test part.
VAL_FRACTION = 0.1


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    return split


def seeded_permutation(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)


def carve(n: int, split: str, fractions: dict[str, float], seed: int) -> torch.Tensor:
    """Indices of ``split`` in a seeded partition of ``range(n)`` into the given fractions.

    The fractions are taken in the order train, val, test; the last part takes the remainder,
    so the parts are disjoint and cover every index.
    """
    order = [s for s in SPLITS if s in fractions]
    if split not in order:
        raise ValueError(
            f"split {split!r} is not available here; choose one of: {', '.join(order)}"
        )
    perm = seeded_permutation(n, seed)
    start = 0
    for i, name in enumerate(order):
        stop = n if i == len(order) - 1 else start + round(fractions[name] * n)
        if name == split:
            return perm[start:stop].sort().values
        start = stop
    raise AssertionError("unreachable")


def train_and_test_parts(
    split: str, seed: int, read: Callable[[bool], tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of ``split`` for a data set shipped as a training and a test part
    (``read(train)`` loads one): the test split is the test part as it is; train and val are a
    seeded partition of the training part, ``VAL_FRACTION`` of it held out."""
    check_split(split)
    if split == "test":
        return read(False)
    x, y = read(True)
    idx = carve(len(y), split, {"train": 1 - VAL_FRACTION, "val": VAL_FRACTION}, seed)
    return x[idx], y[idx]
