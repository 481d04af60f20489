"""Claims and their evidence, as every study records and reports them.

Only what is the same in all of them lives here: the output folder with its ``config.json``,
the claim records with their rounding, and the report section that states each claim with its
evidence as a small table (not raw JSON).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from underfire._version import __version__
from underfire.core import io as _io
from underfire.report import Report

__all__ = [
    "VERDICT",
    "claim_record",
    "evidence_tables",
    "prepare_output",
    "round_floats",
    "write_claims",
]

#: How a claim's ``held`` (True / False / None) reads in a report.
VERDICT = {True: "held", False: "did not hold", None: "not evaluated"}


class _Config(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def prepare_output(
    out: str | Path, cfg: _Config, device: str | torch.device
) -> tuple[Path, torch.device]:
    """Create ``out`` and write ``config.json`` (the config, version and device) atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    _io.write_json(
        out / "config.json",
        cfg.to_dict() | {"underfire_version": __version__, "device": str(device)},
    )
    return out, device


def round_floats(v: Any, decimals: int = 4) -> Any:
    """``v`` with every float (also inside dicts and lists) rounded to ``decimals``; a NaN or
    infinite value (nothing measured) becomes None, which JSON can hold and which equals
    itself when a resumed run is compared with the first."""
    if isinstance(v, float):
        return round(v, decimals) if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: round_floats(x, decimals) for k, x in v.items()}
    if isinstance(v, list):
        return [round_floats(x, decimals) for x in v]
    return v


def claim_record(
    cid: str, text: str, rule: str, evidence: dict[str, Any], held: bool | None, note: str = ""
) -> dict[str, Any]:
    """One claim of a paper as it is stored in ``results.json``."""
    return {
        "id": cid,
        "claim": text,
        "rule": rule,
        "evidence": evidence,
        "held": held,
        "note": note,
    }


def evidence_tables(evidence: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """A claim's evidence as tables a reader can scan: one row per item, one column per quantity.

    Every dict whose own values are plain (numbers, text, lists of plain values) is a record,
    named by its path (``resnet-small / grad``); records with the same quantities share a table
    (the findings' per classifier × interpreter numbers become one table instead of dozens of
    ``quantity | value`` rows). Plain values at the top level form a ``quantity | value`` table.
    """
    top: dict[str, Any] = {}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def walk(d: dict[str, Any], path: str) -> None:
        plain = {k: v for k, v in d.items() if not (isinstance(v, dict) and v)}
        if plain:
            if path:
                row = {"item": path} | {k: _cell(v) for k, v in plain.items()}
                groups.setdefault(tuple(plain), []).append(row)
            else:
                top.update(plain)
        for k, v in d.items():
            if isinstance(v, dict) and v:
                walk(v, f"{path} / {k}" if path else str(k))

    walk(evidence, "")
    tables = [[{"quantity": k, "value": _cell(v)} for k, v in top.items()]] if top else []
    return tables + list(groups.values())


def _cell(value: Any) -> Any:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(x) for x in value) or "—"
    return value


def _plain(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def write_claims(r: Report, claims: Iterable[dict[str, Any]], noun: str) -> None:
    """The summary table of ``claims`` then, per claim, its rule, verdict and evidence table.

    Args:
        r: the report (its current section receives the blocks).
        claims: records made by :func:`claim_record`.
        noun: "claim" or "finding" (the paper's word; the column and paragraph name).
    """
    claims = list(claims)
    r.table([{noun: f"{c['id']}. {c['claim']}", "verdict": VERDICT[c["held"]]} for c in claims])
    for c in claims:
        r.text(
            f"**{noun.capitalize()} {c['id']}** — {c['claim']} Rule: {c['rule']}. "
            f"Verdict: **{VERDICT[c['held']]}**. {c['note']}"
        )
        for table in evidence_tables(c["evidence"]):
            r.table(table)
