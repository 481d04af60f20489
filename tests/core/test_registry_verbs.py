"""One naming scheme: every registry package exposes ``create(name, **kw)`` and ``names()``."""

from __future__ import annotations

import importlib

import pytest
import torch

KINDS = {
    "attacks": "fgsm",
    "interpreters": "grad",
    "models": "ross-cnn",
    "defenses": None,
    "data": None,
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_create_and_names(kind):
    pkg = importlib.import_module(f"underfire.{kind}")
    assert callable(pkg.create) and callable(pkg.names)
    assert "create" in pkg.__all__ and "names" in pkg.__all__
    names = pkg.names()
    assert names and all(isinstance(n, str) for n in names)
    example = KINDS[kind]
    if example is not None:
        assert example in names
        assert pkg.create(example) is not None


def test_old_interpreter_verbs_are_aliases():
    from underfire import interpreters

    assert interpreters.create_interpreter is interpreters.create
    assert interpreters.interpreter_names() == interpreters.names()


def test_dataset_create_loads_a_split():
    """``data.create(name, split)`` is ``load_dataset(name, split)``, keyword arguments too.

    Fails if ``create`` ignores the split (or the seed) or loads another data set."""
    from underfire import data

    ds = data.create("digits", "test")
    expected = data.load_dataset("digits", "test")
    assert ds.split == "test" and ds.info.name == "digits" and len(ds) == 359
    assert torch.equal(ds.x, expected.x) and torch.equal(ds.y, expected.y)
    val = data.create("digits", split="val", seed=1)
    assert torch.equal(val.x, data.load_dataset("digits", "val", seed=1).x)
    assert not torch.equal(val.x, data.load_dataset("digits", "val").x)
