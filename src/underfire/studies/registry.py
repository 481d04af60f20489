"""The study registry: every sub-package of :mod:`underfire.studies` that defines a study
registers it where it is defined (``register_study(STUDY)``); the registry imports the
sub-packages on first use, so a new study is one new package and nothing else changes."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

from underfire.core.registry import Registry
from underfire.studies.base import Study

__all__ = ["STUDIES", "get_study", "register_study", "study_names"]

_REGISTRY: Registry[Study] = Registry("study")
_discovered = False


def register_study(study: Study) -> Study:
    """Register ``study`` under ``study.name`` (a second study of the same name raises)."""
    _REGISTRY.register(study.name)(lambda: study)
    return study


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.ispkg:
            importlib.import_module(f"underfire.studies.{info.name}")


def get_study(name: str) -> Study:
    """The registered study ``name`` (unknown names list the known ones)."""
    _discover()
    return _REGISTRY.create(name)


def study_names() -> list[str]:
    _discover()
    return _REGISTRY.names()


class _Studies:
    """``STUDIES["ross2018"]``, ``"audit" in STUDIES``, ``list(STUDIES)``."""

    def __getitem__(self, name: str) -> Study:
        return get_study(name)

    def get(self, name: str) -> Study:
        return get_study(name)

    def names(self) -> list[str]:
        return study_names()

    def __contains__(self, name: object) -> bool:
        _discover()
        return name in _REGISTRY

    def __iter__(self) -> Iterator[str]:
        return iter(study_names())


STUDIES = _Studies()
