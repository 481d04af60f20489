"""The samples of a Dataset, a DataLoader or an ``(x, y)`` pair as two checked tensors: what
:func:`underfire.robustness.robust_accuracy` and the audit take."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from underfire.core.validation import check_images, check_int, check_labels

__all__ = ["collect_data"]


def collect_data(data: Any, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` samples of a Dataset, a DataLoader or an ``(x, y)`` pair, as tensors.

    Items of a Dataset are (x, y) pairs (x of shape (C, H, W)); batches of a DataLoader are
    (x, y) batches. Images are checked to be floats in [0, 1]; labels to be integer class
    indices of shape (N,), returned as int64. ``n`` is None (all) or an int ≥ 1.
    """
    if n is not None:
        n = check_int(n, "n", minimum=1)
    if isinstance(data, (str, bytes, Mapping)):
        raise TypeError(
            "data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got "
            f"{type(data).__name__}"
        )
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        _check_pair(x, y)
    elif isinstance(getattr(data, "x", None), torch.Tensor) and hasattr(data, "y"):
        x, y = data.x, data.y
        _check_pair(x, y)
    elif isinstance(data, Iterable) or hasattr(data, "__getitem__"):
        xs, ys, count = [], [], 0
        loader = data if isinstance(data, torch.utils.data.DataLoader) else _iterate(data)
        for batch in loader:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise TypeError(
                    f"each item of the data must be an (x, y) pair; got {type(batch).__name__}"
                )
            bx, by = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
            if bx.dim() == 3 and by.dim() == 0:  # a Dataset item, not a batch
                bx, by = bx[None], by[None]
            xs.append(bx)
            ys.append(by)
            count += bx.shape[0]
            if n is not None and count >= n:
                break
        if not xs:
            raise ValueError("the data is empty; pass at least one (x, y) sample")
        x, y = torch.cat(xs), torch.cat(ys)
    else:
        raise TypeError(
            "data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got "
            f"{type(data).__name__}"
        )
    if n is not None:
        x, y = x[:n], y[:n]
    check_images(x)
    check_labels(y, x.shape[0], "labels")
    return x, y.long()


def _check_pair(x: torch.Tensor, y: object) -> None:
    """Images given whole with their labels: every label must match an image (also those
    past ``n``: different lengths mean a broken data set, not a shorter one)."""
    if x.dim() != 4:
        check_images(x)  # the shape error, not a labels error
    check_labels(y, x.shape[0], "labels")


def _iterate(dataset: Any) -> Iterable[Any]:
    for i in range(len(dataset)):
        yield dataset[i]
