"""Checkpoints: a model's weights with the metadata that rebuilds it, loaded without running code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``, so a malicious file cannot
execute anything. It records the registry name and arguments of the model, so loading needs
no code from the user.

Integrity, checked at every load (any failure is a :class:`CheckpointError`):

- a SHA-256 checksum of the whole content (every tensor's dtype, shape and bytes, and every
  other entry), written at save: flipped bytes inside a tensor are detected. A file without
  one whose recorded underfire version writes checksums was edited and is refused; files of
  the development versions before checksums load with a warning (re-save them to add one);
- batch-norm running variances are not negative (no training produces one);
- every floating-point weight is finite, at save (:class:`NonFiniteError`) and at load;
- the entries have the expected types (a schema), the model name is a registered one, its
  integer arguments are sane, and the model is first built on the ``meta`` device (no memory)
  and compared, shape by shape, with the stored weights before any real allocation.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire._version import __version__
from underfire.core import io as _io
from underfire.core.errors import CheckpointError, NonFiniteError

__all__ = [
    "FORMAT",
    "Checkpoint",
    "CheckpointError",
    "check_model_fits_data",
    "checksum",
    "delete_checkpoints",
    "is_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]

FORMAT = "underfire.checkpoint/1"
CHECKSUM_ALGORITHM = "sha256"
# No model of this project has an integer argument (classes, channels, size, depth, width)
# near this; a larger one is a damaged or hostile file, refused before building anything.
MAX_MODEL_INT = 100_000


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    trainer_state: dict[str, Any] | None = None


def checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's content, every entry but ``"checksum"`` itself.

    Tensors contribute their dtype, shape and raw bytes; dicts are walked in sorted key order,
    so the digest does not depend on insertion order.
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != "checksum"})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"S{type(value).__name__}:{value!r};".encode())


def _non_finite(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    meta: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (built by :func:`underfire.models.create_model`) atomically to ``path``.

    Raises:
        CheckpointError: the model has no registry config.
        NonFiniteError: a weight is NaN or infinite (nothing is written).
    """
    config = getattr(model, "config", None)
    if not config or "name" not in config:
        raise CheckpointError(
            "the model has no registry config; build it with underfire.models.create_model"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = _non_finite(state)
    if bad:
        raise NonFiniteError(
            f"refusing to save {path}: weights {', '.join(bad[:5])} hold NaN or infinity "
            "(training diverged; lower the learning rate)"
        )
    payload: dict[str, Any] = {
        "format": FORMAT,
        "underfire_version": __version__,
        "model": {"name": config["name"], "kwargs": dict(config.get("kwargs", {}))},
        "state_dict": state,
        "meta": meta or {},
        "optimizer_state": optimizer_state,
        "trainer_state": trainer_state,
    }
    payload["checksum"] = {"algorithm": CHECKSUM_ALGORITHM, "digest": checksum(payload)}
    return _io.atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The raw checkpoint dict, validated (schema, checksum, finite weights), without
    building a model.

    Raises:
        CheckpointError: missing, unreadable, foreign, damaged or inconsistent file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; train one with `underfire train`")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zips, foreign pickles and bad bytes raise many types
        raise CheckpointError(
            f"{path} is not a readable underfire checkpoint ({type(err).__name__}); "
            "it may be truncated or corrupted, or hold pickled code, which is never executed"
        ) from err
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith("underfire.rts/"):
        raise CheckpointError(
            f"{path} is an RTS masking network, not a classifier checkpoint: load it with "
            "underfire.interpreters.RTS.load(path), or pass it to `underfire explain --interpreter "
            "rts --rts-checkpoint PATH` together with its classifier's --checkpoint"
        )
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an underfire checkpoint (no '{FORMAT}' marker); for a plain state dict "
            "build the model with create_model() and call model.load_state_dict()"
        )
    _check_schema(path, payload)
    if verify:
        _verify_checksum(path, payload)
    bad = _non_finite(payload["state_dict"])
    if bad:
        raise CheckpointError(
            f"{path}: weights {', '.join(bad[:5])} hold NaN or infinity; the model is unusable, "
            "retrain it"
        )
    negative = _negative_variances(payload["state_dict"])
    if negative:
        raise CheckpointError(
            f"{path}: batch-norm running variances {', '.join(negative[:5])} are negative, which "
            "no training produces (the model would output NaN); the file was edited or damaged: "
            "restore it from a copy or retrain"
        )
    return payload


def _negative_variances(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [
        k
        for k, v in state.items()
        if k.endswith("running_var") and v.is_floating_point() and bool((v < 0).any())
    ]


def _check_schema(path: Path, payload: dict[str, Any]) -> None:
    def fail(what: str) -> CheckpointError:
        return CheckpointError(
            f"{path}: {what}; the file is damaged or was not written by underfire"
        )

    for key in ("model", "state_dict"):
        if key not in payload:
            raise fail(f"its {key!r} entry is missing")
    spec = payload["model"]
    if not isinstance(spec, dict):
        raise fail(f"its 'model' entry is a {type(spec).__name__}, not a dict")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise fail("its model has no name")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise fail("its model arguments are not a dict of names")
    for name, value in kwargs.items():
        _check_argument(path, spec["name"], name, value)
    state = payload["state_dict"]
    if not isinstance(state, dict) or not state:
        raise fail("its 'state_dict' entry is not a non-empty dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise fail(f"its weight {key!r} is a {type(value).__name__}, not a tensor")
    for key in ("meta", "optimizer_state", "trainer_state"):
        value = payload.get(key)
        if value is not None and not isinstance(value, dict):
            raise fail(f"its {key!r} entry is a {type(value).__name__}, not a dict")
    meta = payload.get("meta") or {}
    for key, kind in (("dataset", str), ("data_seed", int), ("steps", int)):
        if key in meta and not isinstance(meta[key], kind):
            raise fail(f"meta[{key!r}] is a {type(meta[key]).__name__}, not a {kind.__name__}")
    digest = payload.get("checksum")
    if digest is not None and not (
        isinstance(digest, dict)
        and digest.get("algorithm") == CHECKSUM_ALGORITHM
        and isinstance(digest.get("digest"), str)
    ):
        raise fail("its checksum entry is malformed")


def _check_argument(path: Path, model: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_MODEL_INT:
            raise CheckpointError(
                f"{path}: model {model!r} argument {name}={value} is absurd (over "
                f"{MAX_MODEL_INT:,}); the file is damaged"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{path}: model {model!r} argument {name}={value} is not finite")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_argument(path, model, name, item)
        return
    raise CheckpointError(
        f"{path}: model {model!r} argument {name!r} is a {type(value).__name__}; "
        "expected a number, string or list"
    )


#: Every checkpoint recording this underfire version or a later one has a checksum:
#: checksums were added before any release, while the version was 0.1.0 (so the few files of
#: the development code before them, also "0.1.0", are refused too). Only files recording
#: no version, or an earlier one, load without one (with a warning).
CHECKSUMMED_SINCE = (0, 1, 0)


def _version_tuple(version: object) -> tuple[int, ...] | None:
    """``"0.1.0"`` → ``(0, 1, 0)`` (a suffix such as ``.dev1`` or ``+local`` is ignored);
    None when no version is recorded or it is not one."""
    if not isinstance(version, str):
        return None
    numbers = []
    for part in version.split("+")[0].split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or None


def _verify_checksum(path: Path, payload: dict[str, Any]) -> None:
    stored = payload.get("checksum")
    version = payload.get("underfire_version")
    if stored is None and (_version_tuple(version) or (0,)) >= CHECKSUMMED_SINCE:
        raise CheckpointError(
            f"{path} has no checksum, but underfire {version}, which wrote it, always writes "
            "one: its checksum entry was removed (the file was edited); restore it from a "
            "copy or retrain"
        )
    if stored is None:
        warnings.warn(
            f"{path} has no checksum (written by underfire {payload.get('underfire_version', '?')}); "
            "it loads, but corruption cannot be detected: re-save it with save_checkpoint to add one",
            UserWarning,
            stacklevel=3,
        )
        return
    if checksum(payload) != stored["digest"]:
        raise CheckpointError(
            f"{path} fails its SHA-256 checksum: its content changed after it was written "
            "(corrupted on disk or in transfer, or edited); restore it from a copy or retrain"
        )


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint, in eval mode, on ``device``.

    Raises:
        CheckpointError: see :func:`read_checkpoint`; also when the model cannot be rebuilt or
            the stored weights do not fit it.
    """
    from underfire.models import create_model, model_names

    payload = read_checkpoint(path)
    spec = payload["model"]
    name = spec["name"]
    if name not in model_names():
        raise CheckpointError(
            f"{path} holds an unknown model {name!r}; known models: {', '.join(model_names())}"
        )
    # Stored weights replace any pretrained ones: never read another file while rebuilding.
    kwargs = {k: v for k, v in spec.get("kwargs", {}).items() if k != "weights"}
    state = payload["state_dict"]
    try:
        with torch.device("meta"):  # shapes only: an absurd size allocates nothing
            skeleton = create_model(name, **kwargs)
    except Exception as err:  # a constructor refusing its arguments (any exception type)
        raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {err}") from err
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in state.items()}
    if expected != stored:
        missing = sorted(set(expected) - set(stored))[:3]
        extra = sorted(set(stored) - set(expected))[:3]
        wrong = [k for k in expected if k in stored and expected[k] != stored[k]][:3]
        details = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
                ", ".join(f"{k}: stored {stored[k]}, model {expected[k]}" for k in wrong),
            )
            if part
        )
        raise CheckpointError(f"{path}: weights do not fit model {name!r} ({details})")
    del skeleton
    try:
        model = create_model(name, **kwargs)
        model.load_state_dict(state)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {err}") from err
    model.config = {"name": name, "kwargs": dict(spec.get("kwargs", {}))}
    model.to(device).eval()
    return Checkpoint(
        model,
        payload.get("meta") or {},
        payload.get("optimizer_state"),
        payload.get("trainer_state"),
    )


def check_model_fits_data(model: Any, checkpoint: str | Path, dataset: str, data: Any) -> None:
    """Refuse, before any forward pass, a model evaluated on data of another shape.

    ``model`` and ``data`` are compared through ``model.input_shape``/``num_classes`` and
    ``data.info``; a model or data set without them is not checked.

    Raises:
        CheckpointError: the images or the number of classes differ.
    """
    info = getattr(data, "info", None)
    shape = getattr(model, "input_shape", None)
    classes = getattr(model, "num_classes", None)
    if info is None or shape is None:
        return
    fixed = tuple(shape) if getattr(model, "fixed_input_size", True) else tuple(shape[:1])
    got = tuple(info.shape)[: len(fixed)]
    if got != fixed or (classes is not None and classes != info.num_classes):

        def size(s: tuple[int, ...]) -> str:
            return "×".join(map(str, s))

        raise CheckpointError(
            f"{checkpoint} is a model for {size(tuple(shape))} images with {classes} classes, "
            f"but {dataset} has {size(tuple(info.shape))} images with {info.num_classes} "
            "classes; pass the data set it was trained on (--dataset) or another checkpoint"
        )


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is an underfire checkpoint file, damaged or not: it loads without
    running code and carries the checkpoint format marker (its checksum is not checked)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated zips, foreign pickles and bad bytes raise many types
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def delete_checkpoints(*paths: str | Path, flag: str = "path", dry_run: bool = False) -> list[Path]:
    """Delete those of ``paths`` that exist, if every one of them is an underfire checkpoint
    (:func:`is_checkpoint`); never another file, and nothing when one of them is another file.

    A damaged checkpoint may be replaced; a user's file that merely sits at a checkpoint
    path may not, not even when a command is forced.

    Args:
        paths: the files to delete (missing ones are skipped).
        flag: the option that named them, for messages (e.g. ``"--checkpoint"``).
        dry_run: only check, delete nothing.

    Returns:
        The paths deleted (or, with ``dry_run``, that would be).

    Raises:
        CheckpointError: one of ``paths`` is a folder or a file that is not an underfire
            checkpoint.
    """
    found = [Path(p) for p in paths if Path(p).exists()]
    for path in found:
        if not is_checkpoint(path):
            kind = "a folder" if path.is_dir() else "not an underfire checkpoint"
            raise CheckpointError(
                f"{flag} {path} is {kind}, so it is never replaced (not even when forced); "
                f"move it away or choose another {flag}"
            )
    if not dry_run:
        for path in found:
            path.unlink()
    return found
