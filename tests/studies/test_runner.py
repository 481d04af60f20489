"""The study runner: parts are reused only under an unchanged key, the output folder is
protected for the Python API as for the command line, and the registry finds studies."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from typing import Any

import pytest
import torch
from torch import nn

from underfire.core.errors import OutputLockedError, UnknownNameError
from underfire.core.io import LOCK_NAME
from underfire.core.outputs import OutputConflictError
from underfire.studies import Part, Study, StudyRun, get_study, run_study


@dataclass(frozen=True)
class ToyConfig:
    scale: float = 2.0
    label: str = "a"  # read by no part: changing it must not recompute anything
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


def _score(run: StudyRun) -> dict[str, Any]:
    _count("score")
    model, (x, _y) = run.state["model"], run.state["data"]
    with torch.no_grad():
        return {"total": float(model(x).sum() * run.config.scale)}


def _double(run: StudyRun) -> dict[str, Any]:
    _count("double")
    return {"twice": run.results["score"]["total"] * 2}


def _tensor(run: StudyRun) -> torch.Tensor:
    _count("tensor")
    return run.state["data"][0] * run.config.scale


TOY = Study(
    name="toy",
    title="a toy study",
    configure=ToyConfig,
    parts=(
        Part("score", _score, reads=("scale",), uses=("model", "data")),
        Part("double", _double, reads=("scale",), uses=("model", "data")),
        Part("tensor", _tensor, reads=("scale",), uses=("data",), store="torch"),
    ),
    inputs=("model", "data"),
)


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, 3, generator=g), torch.zeros(4, dtype=torch.long)


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def _run(out, model, data, config=None, **kw):
    return run_study(
        TOY, config or ToyConfig(), inputs={"model": model, "data": data}, out=out, **kw
    )


def test_an_unchanged_run_reuses_every_part_and_gives_the_same_results(tmp_path):
    """Fails if the cache never hits, or a reused part differs from the computed one."""
    model, data = _model(0), _data()
    first = _run(tmp_path, model, data)
    assert CALLS == {"score": 1, "double": 1, "tensor": 1}
    second = _run(tmp_path, model, data)
    assert CALLS == {"score": 1, "double": 1, "tensor": 1}  # nothing recomputed
    assert second["score"] == first["score"] and second["double"] == first["double"]
    assert torch.equal(second["tensor"], first["tensor"])
    assert second["run"]["reused"] == ["score", "double", "tensor"]
    assert first["run"]["reused"] == []


def test_another_model_in_the_same_folder_is_refused_then_recomputed_with_force(tmp_path):
    """The audit bug in general form: fails if a part computed for model A is reported for
    model B (the key must hold the model's identity, not only the settings)."""
    data = _data()
    a = _run(tmp_path, _model(0), data)
    with pytest.raises(OutputConflictError, match=r"a different `run_study\('toy'\)` run"):
        _run(tmp_path, _model(1), data)
    b = _run(tmp_path, _model(1), data, force=True)
    assert CALLS["score"] == 2 and CALLS["double"] == 2
    assert CALLS["tensor"] == 1  # uses only the data, which did not change
    assert b["score"] != a["score"]
    assert "score" not in b["run"]["reused"]


def test_a_part_reads_only_the_config_fields_it_declares(tmp_path):
    """Fails if the key ignores a read field (scale) or includes an unread one (label)."""
    model, data = _model(0), _data()
    _run(tmp_path, model, data)
    _run(tmp_path, model, data, ToyConfig(label="b"), force=True)
    assert CALLS["score"] == 1
    _run(tmp_path, model, data, ToyConfig(scale=3.0), force=True)
    assert CALLS["score"] == 2


def test_other_data_or_other_code_recomputes(tmp_path):
    """Fails if the key misses the data's identity or the part's code."""
    model = _model(0)
    _run(tmp_path, model, _data(0))
    _run(tmp_path, model, _data(1), force=True)
    assert CALLS["score"] == 2

    def _score_v2(run: StudyRun) -> dict[str, Any]:
        _count("score")
        return {"total": 0.0}

    changed = replace(
        TOY, parts=(Part("score", _score_v2, reads=("scale",), uses=("model", "data")),)
    )
    result = run_study(
        changed, ToyConfig(), inputs={"model": model, "data": _data(1)}, out=tmp_path, force=True
    )
    assert CALLS["score"] == 3 and result["score"] == {"total": 0.0}


def test_a_torn_or_foreign_part_file_is_recomputed(tmp_path):
    """Fails if a damaged part file is trusted or crashes the run."""
    model, data = _model(0), _data()
    first = _run(tmp_path, model, data)
    (tmp_path / "parts" / "score.json").write_text("{not json")
    (tmp_path / "parts" / "tensor.pt").write_bytes(b"garbage")
    again = _run(tmp_path, model, data)
    assert CALLS["score"] == 2 and CALLS["tensor"] == 2
    assert again["score"] == first["score"]


def test_the_python_api_refuses_a_folder_held_by_a_live_run(tmp_path):
    """Fails if run_study writes into a folder another live process has locked."""
    (tmp_path / LOCK_NAME).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": "underfire audit"})
    )
    with pytest.raises(OutputLockedError, match="in use"):
        _run(tmp_path, _model(0), _data())
    assert CALLS == {} and not (tmp_path / "results.json").exists()


def test_results_config_and_records_are_written(tmp_path):
    result = _run(tmp_path, _model(0), _data())
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["score"] == result["score"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["scale"] == 2.0 and config["study"] == "toy"
    assert config["inputs"]["model"].startswith("model:")
    records = json.loads((tmp_path / ".underfire-runs.json").read_text())
    assert records["results.json"]["finished"]


def test_in_memory_runs_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_study(TOY, inputs={"model": _model(0), "data": _data()}, scale=1.0)
    assert result["score"]["total"] == pytest.approx(float(_model(0)(_data()[0]).sum().detach()))
    assert list(tmp_path.iterdir()) == []


def test_inputs_and_options_are_checked():
    with pytest.raises(TypeError, match="takes the inputs: model, data"):
        run_study(TOY, ToyConfig(), inputs={"model": _model(0)})
    with pytest.raises(TypeError, match="either a config or"):
        run_study(TOY, ToyConfig(), inputs={"model": _model(0), "data": _data()}, scale=1.0)


def test_unknown_study_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown study 'nope'"):
        get_study("nope")


def test_parts_named_twice_are_refused():
    with pytest.raises(ValueError, match="parts named twice: a"):
        Study("x", "x", ToyConfig, (Part("a", _score), Part("a", _double)))


def test_the_code_version_follows_compiled_code_not_line_positions():
    """Fails if the key hashes source text by position (a line inserted above a part while a
    run goes on changed its key) or ignores what the function does."""
    from underfire.studies.cache import code_version

    def f(run):
        return {"a": 1}

    namespace: dict = {}
    exec("\n\n\ndef f(run):\n    return {'a': 1}\n", namespace)  # same code, other lines
    assert code_version(namespace["f"]) == code_version(f)
    exec("def f(run):\n    return {'a': 2}\n", namespace)
    assert code_version(namespace["f"]) != code_version(f)
    exec("def f(run):\n    return {'a': 1 if run in {'x', 'y', 'z'} else 0}\n", namespace)
    assert code_version(namespace["f"]) != code_version(f)
    assert code_version(f, version=2) != code_version(f)


def test_the_code_version_tells_apart_functions_that_differ_only_in_what_they_call():
    """Fails if the names a function uses (the functions it calls) are left out of its
    code version: `return alpha(run)` and `return omega(run)` compile to the same bytecode."""
    from underfire.studies.cache import code_version

    ns_a: dict = {}
    ns_b: dict = {}
    exec("def f(run):\n    return alpha(run)\n", ns_a)
    exec("def f(run):\n    return omega(run)\n", ns_b)
    assert ns_a["f"].__code__.co_code == ns_b["f"].__code__.co_code
    assert code_version(ns_a["f"]) != code_version(ns_b["f"])
