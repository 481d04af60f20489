"""Small name → factory registries, one per kind (datasets, models, attacks, ...).

Only the CLI and configs use names; library code passes objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from underfire.core.errors import UnknownNameError

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories for one kind of object.

    >>> models = Registry("model")
    >>> @models.register("tiny")
    ... def tiny(**kw): ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        key = _normalize(name)

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if key in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[key] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        key = _normalize(name)
        if key not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._entries[key]

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the entry ``name`` with ``kwargs``; bad arguments name the entry."""
        factory = self.get(name)
        try:
            return factory(**kwargs)
        except TypeError as err:
            raise TypeError(f"bad arguments for {self.kind} {name!r}: {err}") from err

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalize(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _normalize(name: str) -> str:
    # "Fashion_MNIST", "fashion-mnist" and "fashion mnist" are the same thing to a user.
    return name.strip().lower().replace("_", "-").replace(" ", "-")
