"""The part cache: a finished part is reused only when everything it depends on is the same.

A part's *key* names the study and part, the code that computes it (the part's declared
version, underfire's version and the compiled code of its function and of all underfire code
that function reaches: :mod:`underfire.studies.codeversion`), the config fields it reads, and
the identity of every model and data set it uses: a model by the SHA-256 of its state dict (the
digest :mod:`underfire.checkpoint` writes into checkpoints), data by the SHA-256 of its tensors'
dtypes, shapes and bytes, a file by the SHA-256 of its content. A part stored under another key
is recomputed and replaced, never reused or mixed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire.checkpoint import checksum
from underfire.core import io as _io
from underfire.studies.codeversion import code_version

__all__ = [
    "PartCache",
    "code_version",
    "fingerprint",
    "fingerprint_data",
    "fingerprint_file",
    "fingerprint_model",
    "part_key",
]


def fingerprint_model(model: nn.Module) -> str:
    """SHA-256 of ``model``'s state dict (parameters and buffers, their dtypes and shapes)."""
    return "model:" + checksum({"model": model.state_dict()})


def fingerprint_data(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' dtypes, shapes and bytes, in order (e.g. ``x, y``)."""
    return "data:" + checksum({"tensors": list(tensors)})


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_file(path: str | Path) -> str:
    """SHA-256 of a file's content (memoized per path, size and modification time)."""
    p = Path(path).resolve()
    st = p.stat()
    return "file:" + _file_digest(str(p), st.st_size, st.st_mtime_ns)


def fingerprint(value: Any) -> str:
    """The identity of a model, data set, tensor(s), file or plain value a part uses."""
    if isinstance(value, nn.Module):
        return fingerprint_model(value)
    if isinstance(value, torch.Tensor):
        return fingerprint_data(value)
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        return fingerprint_data(*value)
    x, y = getattr(value, "x", None), getattr(value, "y", None)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):  # an in-memory dataset
        return fingerprint_data(x, y)
    if isinstance(value, Path):
        return fingerprint_file(value)
    try:
        text = json.dumps(value, sort_keys=True)
    except TypeError as err:
        raise TypeError(
            f"a part uses a {type(value).__name__}, which has no fingerprint; pass a model, "
            "tensors, an in-memory dataset, a file path or JSON-able data"
        ) from err
    return "value:" + hashlib.sha256(text.encode()).hexdigest()


def part_key(
    study: str,
    part: str,
    *,
    code: str,
    config: Mapping[str, Any],
    uses: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON-able key of one part (see the module docstring)."""
    return {
        "study": study,
        "part": part,
        "code": code,
        "config": json.loads(json.dumps(dict(config), sort_keys=True, default=str)),
        "uses": {name: fingerprint(v) for name, v in sorted(uses.items())},
    }


class PartCache:
    """Finished parts under ``root``: ``NAME.json`` for JSON-able results, ``NAME.pt`` for
    tensors (saved with ``torch.save``, read back with ``weights_only=True``).

    :meth:`get` returns a stored value only when its key equals the requested key; a missing,
    torn, foreign or differently keyed file is a miss (and is replaced by :meth:`put`).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str, store: str) -> Path:
        if store not in ("json", "torch"):
            raise ValueError(f"store must be 'json' or 'torch', got {store!r}")
        safe = name.replace("/", "__")
        return self.root / f"{safe}.{'json' if store == 'json' else 'pt'}"

    def get(self, name: str, key: Mapping[str, Any], store: str = "json") -> tuple[bool, Any]:
        """``(True, value)`` for a part stored under ``key``; ``(False, None)`` otherwise."""
        path = self.path(name, store)
        if not path.is_file():
            return False, None
        wanted = json.dumps(dict(key), sort_keys=True)
        try:
            if store == "json":
                stored = json.loads(path.read_text(encoding="utf-8"))
            else:
                stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torn, foreign or unreadable: recompute
            return False, None
        if not isinstance(stored, dict) or "value" not in stored:
            return False, None
        if json.dumps(stored.get("key"), sort_keys=True) != wanted:
            return False, None
        return True, stored["value"]

    def put(self, name: str, key: Mapping[str, Any], value: Any, store: str = "json") -> Any:
        """Store ``value`` under ``key`` atomically; returns the value as a later run will
        read it back, so that a fresh and a resumed run continue with the same objects."""
        path = self.path(name, store)
        if store == "json":
            _io.write_json(path, {"key": dict(key), "value": value})
            # what a resumed run reads back: tuples become lists, tensors lists of numbers
            return json.loads(path.read_text(encoding="utf-8"))["value"]
        else:
            payload = {"key": json.loads(json.dumps(dict(key))), "value": _cpu(value)}
            path.parent.mkdir(parents=True, exist_ok=True)
            _io.atomic_write(path, lambda f: torch.save(payload, f))
        return value


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu(v) for v in value)
    return value
