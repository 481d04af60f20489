"""The part cache's key and store: what makes a stored result reusable, and nothing else."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from torch import nn

from underfire.studies.cache import (
    PartCache,
    code_version,
    fingerprint,
    fingerprint_data,
    fingerprint_file,
    fingerprint_model,
    part_key,
)


def _linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def test_a_model_is_identified_by_its_weights_and_buffers() -> None:
    """Fails if two models with other weights (or the same weights) are told apart wrongly."""
    a, b = _linear(0), _linear(0)
    assert fingerprint_model(a) == fingerprint_model(b) == fingerprint(a)
    with torch.no_grad():
        b.bias[0] += 1e-6
    assert fingerprint_model(a) != fingerprint_model(b)
    bn, bn2 = nn.BatchNorm1d(3), nn.BatchNorm1d(3)
    bn2.running_var += 1  # a buffer, not a parameter
    assert fingerprint(bn) != fingerprint(bn2)
    assert fingerprint(a).startswith("model:")


def test_data_is_identified_by_values_shape_dtype_and_order() -> None:
    """Fails if data that differ in one value, shape, dtype or order share an identity."""
    x, y = torch.arange(6.0).reshape(2, 3), torch.tensor([0, 1])
    same = fingerprint_data(x.clone(), y.clone())
    assert fingerprint_data(x, y) == same == fingerprint((x, y)) == fingerprint([x, y])
    assert fingerprint_data(x, y) != fingerprint_data(y, x)
    assert fingerprint_data(x.reshape(3, 2), y) != same
    assert fingerprint_data(x.double(), y) != same
    x2 = x.clone()
    x2[1, 2] = 5.5
    assert fingerprint_data(x2, y) != same
    assert fingerprint(x) == fingerprint_data(x) != same
    assert fingerprint(x).startswith("data:")


def test_an_in_memory_dataset_is_its_x_and_y() -> None:
    class Data:
        def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
            self.x, self.y = x, y

    x, y = torch.rand(4, 3), torch.tensor([0, 1, 0, 1])
    assert fingerprint(Data(x, y)) == fingerprint_data(x, y)
    assert fingerprint(Data(x, y + 1)) != fingerprint_data(x, y)


def test_a_file_is_identified_by_its_bytes(tmp_path) -> None:
    """Fails if a file's identity ignores a change of content (also of the same size)."""
    p = tmp_path / "w.bin"
    p.write_bytes(b"abcd")
    first = fingerprint_file(p)
    assert first == fingerprint(p) and first.startswith("file:")
    p.write_bytes(b"abce")
    assert fingerprint_file(p) != first
    (tmp_path / "other.bin").write_bytes(b"abcd")
    assert fingerprint_file(tmp_path / "other.bin") == first


def test_plain_values_are_identified_by_their_json_and_others_are_refused() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint("x").startswith("value:")
    with pytest.raises(TypeError, match="has no fingerprint"):
        fingerprint(object())


def test_the_key_holds_study_part_code_config_and_uses() -> None:
    """Fails if any of the key's components is left out of it."""
    base = {"code": "c", "config": {"eps": 0.1}, "uses": {"m": "value-a"}}
    key = part_key("s", "p", **base)
    assert key == {
        "study": "s",
        "part": "p",
        "code": "c",
        "config": {"eps": 0.1},
        "uses": {"m": fingerprint("value-a")},
    }
    assert part_key("s2", "p", **base) != key
    assert part_key("s", "p2", **base) != key
    assert part_key("s", "p", **(base | {"code": "d"})) != key
    assert part_key("s", "p", **(base | {"config": {"eps": 0.2}})) != key
    assert part_key("s", "p", **(base | {"uses": {"m": "value-b"}})) != key
    assert json.loads(json.dumps(key)) == key  # stored as JSON


def test_a_partial_contributes_its_bound_arguments_to_the_code_version() -> None:
    def f(run, name):
        return name

    assert code_version(functools.partial(f, name="a")) != code_version(
        functools.partial(f, name="b")
    )
    assert code_version(functools.partial(f, name="a")) == code_version(
        functools.partial(f, name="a")
    )
    assert len(code_version(f)) == 16
    assert code_version(print) == code_version(print)  # a built-in: versioned by its name


def test_the_store_returns_a_value_only_under_its_exact_key(tmp_path) -> None:
    """Fails if a stored value is returned for another key, or a miss is reported as a hit."""
    cache = PartCache(tmp_path)
    key = {"a": 1}
    assert cache.get("p", key) == (False, None)
    assert cache.put("p", key, {"v": (1, 2)}) == {"v": [1, 2]}  # as a later run reads it
    assert cache.get("p", key) == (True, {"v": [1, 2]})
    assert cache.get("p", {"a": 2}) == (False, None)
    assert cache.get("q", key) == (False, None)
    cache.put("p", {"a": 2}, {"v": 3})
    assert cache.get("p", key) == (False, None)  # replaced, not mixed
    assert cache.put("none", key, None) is None
    assert cache.get("none", key) == (True, None)  # a stored None is a hit


def test_tensors_are_stored_with_torch_and_read_back_safely(tmp_path) -> None:
    cache = PartCache(tmp_path)
    t = torch.rand(3, requires_grad=True)
    stored = cache.put("t", {"k": 1}, {"x": t, "rest": [t, 1]}, store="torch")
    assert (tmp_path / "t.pt").exists() and not (tmp_path / "t.json").exists()
    hit, value = cache.get("t", {"k": 1}, store="torch")
    assert hit and torch.equal(value["x"], t.detach()) and not value["x"].requires_grad
    assert torch.equal(stored["x"], t.detach()) and value["rest"][1] == 1
    assert cache.get("t", {"k": 2}, store="torch") == (False, None)
    assert cache.get("t", {"k": 1}) == (False, None)  # the JSON file does not exist


def test_names_are_files_inside_the_root_and_the_store_kind_is_checked(tmp_path) -> None:
    cache = PartCache(tmp_path)
    assert cache.path("a/b", "json") == tmp_path / "a__b.json"
    assert cache.path("a", "torch") == tmp_path / "a.pt"
    with pytest.raises(ValueError, match="store must be 'json' or 'torch'"):
        cache.path("a", "pickle")


def test_damaged_or_foreign_files_are_misses(tmp_path) -> None:
    cache = PartCache(tmp_path)
    (tmp_path / "a.json").write_text("[1, 2]")  # JSON, but not a stored part
    (tmp_path / "b.json").write_text('{"key": {"a": 1}}')  # no value
    (tmp_path / "c.json").write_text("{torn")
    (tmp_path / "d.pt").write_bytes(b"not a torch file")
    for name, store in (("a", "json"), ("b", "json"), ("c", "json"), ("d", "torch")):
        assert cache.get(name, {"a": 1}, store) == (False, None)


def test_a_pickled_object_in_a_part_file_is_never_executed(tmp_path) -> None:
    """Fails if part files are read with pickle's full power (``weights_only=False``): a part
    file is data, and one that needs code to load is a miss, never run."""
    import pickle

    class Boom:
        def __reduce__(self):  # executed by an unrestricted unpickler
            return (exec, ("import pathlib; pathlib.Path('RAN').write_text('x')",))

    cache = PartCache(tmp_path)
    key = {"k": 1}
    with open(tmp_path / "evil.pt", "wb") as f:
        torch.save({"key": key, "value": Boom()}, f, pickle_module=pickle)
    assert cache.get("evil", key, store="torch") == (False, None)
    assert not (tmp_path / "RAN").exists() and not __import__("pathlib").Path("RAN").exists()


def test_the_code_version_covers_nested_functions_and_which_function_a_partial_wraps() -> None:
    """Fails if a nested function's (comprehension's, lambda's) code or the function behind a
    partial is left out of the code version."""
    ns_a: dict = {}
    ns_b: dict = {}
    exec("def f(run):\n    return [v * 2 for v in run]\n", ns_a)
    exec("def f(run):\n    return [v * 3 for v in run]\n", ns_b)
    assert code_version(ns_a["f"]) != code_version(ns_b["f"])

    def g(run, name):
        return name

    def h(run, name):
        return name * 2

    assert code_version(functools.partial(g, name="a")) != code_version(
        functools.partial(h, name="a")
    )
    assert code_version(print) != code_version(len)  # built-ins: told apart by their names


def test_only_an_object_with_tensor_x_and_y_counts_as_a_dataset() -> None:
    class HalfData:
        x = torch.rand(2, 3)
        y = [0, 1]

    with pytest.raises(TypeError, match="has no fingerprint"):
        fingerprint(HalfData())


def test_a_file_rewritten_within_the_same_timestamp_is_hashed_again(tmp_path) -> None:
    """Fails if the memo of file digests ignores the size: a file rewritten with other
    content and its old modification time must not keep its old identity."""
    import os

    p = tmp_path / "w.bin"
    p.write_bytes(b"abcd")
    stamp = p.stat().st_mtime_ns
    first = fingerprint_file(p)
    p.write_bytes(b"abcdef")
    os.utime(p, ns=(stamp, stamp))
    assert fingerprint_file(p) != first


def test_the_store_creates_missing_folders(tmp_path) -> None:
    for store in ("json", "torch"):
        cache = PartCache(tmp_path / store / "a" / "b")
        cache.put("p", {"k": 1}, {"v": torch.ones(1)} if store == "torch" else {"v": 1}, store)
        assert cache.get("p", {"k": 1}, store)[0]
