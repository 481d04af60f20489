"""Checkpoints: a model's weights with the metadata that rebuilds it, loaded without running code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``, so a malicious file cannot
execute anything. It records the registry name and arguments of the model, so loading needs
no code from the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from underfire._version import __version__
from underfire.core import io as _io
from underfire.core.errors import CheckpointError

FORMAT = "underfire.checkpoint/1"


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    trainer_state: dict[str, Any] | None = None


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    meta: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (built by :func:`underfire.models.create_model`) atomically to ``path``."""
    config = getattr(model, "config", None)
    if not config or "name" not in config:
        raise CheckpointError(
            "the model has no registry config; build it with underfire.models.create_model"
        )
    payload = {
        "format": FORMAT,
        "underfire_version": __version__,
        "model": {"name": config["name"], "kwargs": config.get("kwargs", {})},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
        "optimizer_state": optimizer_state,
        "trainer_state": trainer_state,
    }
    return _io.atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated, without building a model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found; train one with `underfire train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zips, foreign pickles and bad bytes raise many types
        raise CheckpointError(
            f"{path} is not a readable underfire checkpoint ({type(err).__name__}); "
            "it may be truncated or corrupted, or hold pickled code, which is never executed"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an underfire checkpoint (no '{FORMAT}' marker); for a plain state dict "
            "build the model with create_model() and call model.load_state_dict()"
        )
    for key in ("model", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path} is missing its {key!r} entry; the file is damaged")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model of a checkpoint, in eval mode, on ``device``."""
    from underfire.models import create_model

    payload = read_checkpoint(path)
    spec = payload["model"]
    try:
        model = create_model(spec["name"], **spec.get("kwargs", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot rebuild model {spec.get('name')!r}: {err}") from err
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{path}: weights do not fit model {spec['name']!r}: {str(err)[:300]}"
        ) from err
    model.to(device).eval()
    return Checkpoint(
        model,
        payload.get("meta") or {},
        payload.get("optimizer_state"),
        payload.get("trainer_state"),
    )
