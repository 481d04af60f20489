"""The answers of a study in SQLite (``STUDY/answers.sqlite``).

Write-ahead log; each answer is its own transaction, committed before the server replies, so
an acknowledged answer survives the server being killed (``kill -9``): a committed WAL frame is
in the file, and the next open replays it. ``fsync=True`` also waits for the disk at every
commit (``synchronous=FULL``), which survives a power loss as well. ``(rater, item)`` is a
unique key: a repeated submission cannot store an answer twice.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "AnswerStore", "export_csv"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    rater TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY,
    rater TEXT NOT NULL REFERENCES raters(rater),
    item TEXT NOT NULL,
    position INTEGER NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('left', 'right')),
    chosen TEXT NOT NULL CHECK (chosen IN ('a', 'b')),
    swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    ms INTEGER NOT NULL CHECK (ms >= 0),
    received REAL NOT NULL,
    UNIQUE (rater, item),
    UNIQUE (rater, position)
);
"""

#: The columns of an exported answer, in order.
COLUMNS = ("rater", "item", "position", "side", "chosen", "swapped", "ms", "received")


class AnswerStore:
    """One connection to a study's answer database (one process writes: the server)."""

    def __init__(self, path: str | Path, *, fsync: bool = False, readonly: bool = False) -> None:
        """Open (``readonly``: an existing database, for analysis and export) or create."""
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"{self.path} does not exist: no answers yet (serve the study first)"
                )
            # a plain connection that writes nothing: read-only ones cannot recover the WAL of
            # a server that was killed
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        else:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self.db.executescript(_SCHEMA)
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self.db.close()

    def token(self, rater: str) -> str | None:
        row = self.db.execute("SELECT token FROM raters WHERE rater = ?", (rater,)).fetchone()
        return row[0] if row else None

    def add_rater(self, rater: str, token: str) -> bool:
        """Register ``rater``; False when the id is taken (nothing changes then)."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO raters (rater, token, started) VALUES (?, ?, ?)",
            (rater, token, time.time()),
        )
        return cur.rowcount == 1

    def answered(self, rater: str) -> dict[str, str]:
        """The rater's answers so far: item → side chosen."""
        rows = self.db.execute("SELECT item, side FROM answers WHERE rater = ?", (rater,))
        return dict(rows.fetchall())

    def add_answer(
        self, rater: str, item: str, position: int, side: str, chosen: str, swapped: bool, ms: int
    ) -> str:
        """Store one answer in its own transaction: ``"stored"``, ``"duplicate"`` (the same
        answer was stored before) or ``"conflict"`` (another answer to that item was)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT side FROM answers WHERE rater = ? AND item = ?", (rater, item)
            ).fetchone()
            if row is not None:
                db.execute("ROLLBACK")
                return "duplicate" if row[0] == side else "conflict"
            db.execute(
                "INSERT INTO answers (rater, item, position, side, chosen, swapped, ms, received)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rater, item, position, side, chosen, int(swapped), ms, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return "stored"

    def rows(self) -> list[dict[str, Any]]:
        """Every answer, in the order received."""
        cur = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM answers ORDER BY id")
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def progress(self, items_per_rater: int) -> dict[str, int]:
        raters = self.db.execute("SELECT COUNT(*) FROM raters").fetchone()[0]
        answers = self.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        completed = self.db.execute(
            "SELECT COUNT(*) FROM (SELECT rater FROM answers GROUP BY rater HAVING COUNT(*) >= ?)",
            (items_per_rater,),
        ).fetchone()[0]
        return {"raters": raters, "answers": answers, "completed": completed}

    def integrity(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def export_csv(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> str:
    """One CSV row per answer, with the item's models, target and the model chosen."""
    items = {it["id"]: it for it in manifest["items"]}
    out = io.StringIO()
    fields = [*COLUMNS, "kind", "target", "model_a", "model_b", "chosen_model", "correct"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        item = items.get(row["item"], {})
        chosen = item.get(row["chosen"], "")
        writer.writerow(
            row
            | {
                "kind": item.get("kind", "unknown"),
                "target": item.get("target", ""),
                "model_a": item.get("a", ""),
                "model_b": item.get("b", ""),
                "chosen_model": chosen,
                "correct": ""
                if item.get("kind") != "check"
                else int(row["chosen"] == item["correct"]),
            }
        )
    return out.getvalue()
