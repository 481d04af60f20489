"""Profiles: a study's settings as layers (dataset defaults, a named profile, its per-dataset
tweaks) with the caller's explicit options applied last. Shared by every study config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["dataset_name", "layered_settings"]


def dataset_name(name: str) -> str:
    """A data set's name as the studies spell it (``CIFAR-10`` → ``cifar10``, ``Fashion_MNIST``
    → ``fashion-mnist``)."""
    return name.lower().replace("_", "-").replace("cifar-10", "cifar10")


def layered_settings(
    dataset: str,
    profile: str,
    *,
    datasets: Iterable[str],
    profiles: Iterable[str],
    layers: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, Any],
    tuples: Sequence[str] = (),
    floats: Sequence[str] = (),
) -> dict[str, Any]:
    """``{"dataset", "profile"}`` then each of ``layers`` in order, then the ``overrides`` that
    are not None; the fields named in ``tuples`` become tuples (``floats``: of floats).

    Raises:
        ValueError: an unknown profile or data set (the message lists the known ones).
    """
    profiles, datasets = list(profiles), list(datasets)
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(profiles)}")
    if dataset not in datasets:
        raise ValueError(f"dataset must be one of {', '.join(datasets)}, got {dataset!r}")
    settings: dict[str, Any] = {"dataset": dataset, "profile": profile}
    for layer in layers:
        settings |= layer
    settings |= {k: v for k, v in overrides.items() if v is not None}
    for key in (*tuples, *floats):
        if settings.get(key) is not None:
            settings[key] = tuple(settings[key])
    for key in floats:
        if settings.get(key) is not None:
            settings[key] = tuple(float(v) for v in settings[key])
    return settings
