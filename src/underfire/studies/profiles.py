"""Profiles: a study's settings as layers (dataset defaults, a named profile, its per-dataset
tweaks) with the caller's explicit options applied last; and what every study config does alike
(its ``config.json`` form, its range checks)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "check_at_least",
    "config_from_dict",
    "config_to_dict",
    "dataset_name",
    "layered_settings",
]

C = TypeVar("C", bound="DataclassInstance")


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


def config_to_dict(config: DataclassInstance) -> dict[str, Any]:
    """A study config as ``config.json`` records it: its fields, tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """The config ``cls`` of a recorded dict: keys it has no field for are dropped (written
    by another version), lists become tuples again."""
    names = {f.name for f in fields(cls)}
    return cls(
        **{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    )


def check_at_least(config: object, minimum: int, *names: str) -> None:
    """Refuse (ValueError, naming it) the first of the fields ``names`` below ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise ValueError(f"{name} must be ≥ {minimum}, got {value}")
