"""``underfire study simulate``: simulated raters answering through the real HTTP API.

N raters run at once (asyncio, one keep-alive connection each, a minimal HTTP/1.1 client so
that the load generator itself stays light on the shared CPU); each starts a session and
answers up to M items in order. An answer is *acknowledged* when the server replied 200 with
``"stored": true``. A failed request (connection refused or reset while the server restarts,
a 5xx) is retried with the same answer after a pause, until ``timeout``: the server stores it
once. Bounded in raters, answers and time, and loopback only unless ``allow_remote``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MAX_ANSWERS", "MAX_RATERS", "check_url", "percentile", "simulate"]

MAX_RATERS = 1000
MAX_ANSWERS = 1000


def check_url(url: str, allow_remote: bool = False) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of an http(s) URL; refuses a non-loopback host unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be an http:// or https:// address, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(
            f"{host} is not a loopback address; simulate loads a server on this machine "
            "(127.0.0.1, ::1, localhost); pass --allow-remote to load your own deployment"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port, parts.scheme == "https"


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class _Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls or None
            )
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + data)
            await self.writer.drain()
            status_line = await self.reader.readuntil(b"\r\n")
            length, close = 0, False
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "connection" and "close" in value.lower():
                    close = True
            payload = await self.reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        status = int(status_line.split()[1])
        try:
            reply = json.loads(payload) if payload else {}
        except ValueError:
            reply = {}
        return status, reply if isinstance(reply, dict) else {}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    acknowledged: list[tuple[str, str]] = field(default_factory=list)
    errors: int = 0
    refused: int = 0


async def _request(
    conn: _Connection, path: str, body: dict[str, Any], tally: _Tally, deadline: float
) -> tuple[int, dict[str, Any], float]:
    """The request, retried after connection failures and 5xx until ``deadline``."""
    pause = 0.05
    while True:
        t0 = time.perf_counter()
        try:
            status, reply = await conn.post(path, body)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status, reply = 0, {}
        elapsed = time.perf_counter() - t0
        if 0 < status < 500:
            return status, reply, elapsed
        tally.errors += 1
        if time.monotonic() + pause > deadline:
            return status, reply, elapsed
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def _rater(
    name: str,
    answers: int,
    target: tuple[str, int, bool],
    tally: _Tally,
    deadline: float,
    seed: int,
) -> None:
    conn = _Connection(*target)
    rng = random.Random(f"{seed}:{name}")
    try:
        status, state, _ = await _request(conn, "/api/session", {"rater": name}, tally, deadline)
        if status != 200:
            tally.refused += 1
            return
        for _ in range(answers):
            item = state.get("item")
            if not item:
                return
            body = {
                "rater": name,
                "token": state["token"],
                "item": item["id"],
                "choice": rng.choice(("left", "right")),
                "ms": rng.randint(300, 3000),
            }
            status, reply, elapsed = await _request(conn, "/api/answer", body, tally, deadline)
            if status != 200 or not reply.get("stored"):
                tally.refused += 1
                return
            tally.latencies.append(elapsed * 1000)
            tally.acknowledged.append((name, item["id"]))
            state = reply
    finally:
        conn.close()


def _loop_factory() -> Any:
    """uvloop's event loop where installed (the ``study`` extra brings it): a lighter client
    leaves more of the shared CPU to the server being measured."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def simulate(
    url: str,
    *,
    raters: int = 50,
    answers: int = 20,
    timeout: float = 120.0,
    allow_remote: bool = False,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run ``raters`` simulated raters at once against ``url``, each answering up to
    ``answers`` items; returns ``{"acknowledged", "errors", "p50_ms", "p99_ms", ...}`` and
    the acknowledged ``(rater, item)`` pairs under ``"answers"``."""
    target = check_url(url, allow_remote)
    if not 1 <= raters <= MAX_RATERS or not 1 <= answers <= MAX_ANSWERS:
        raise ValueError(
            f"raters must be 1..{MAX_RATERS} and answers 1..{MAX_ANSWERS}, got {raters} and {answers}"
        )
    if not 0 < timeout <= 3600:
        raise ValueError(f"timeout must be in (0, 3600] seconds, got {timeout}")
    seed = secrets.randbits(32) if seed is None else seed
    run = f"sim-{seed:08x}"
    tally = _Tally()

    async def main() -> None:
        deadline = time.monotonic() + timeout
        jobs = [_rater(f"{run}-{i}", answers, target, tally, deadline, seed) for i in range(raters)]
        try:
            await asyncio.wait_for(asyncio.gather(*jobs), timeout)
        except TimeoutError:
            pass  # bounded: what was acknowledged until then is reported

    t0 = time.perf_counter()
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(main())
    p50, p99 = percentile(tally.latencies, 50), percentile(tally.latencies, 99)
    return {
        "acknowledged": len(tally.acknowledged),
        "errors": tally.errors + tally.refused,
        "p50_ms": round(p50, 2) if p50 is not None else None,
        "p99_ms": round(p99, 2) if p99 is not None else None,
        "max_ms": round(max(tally.latencies), 2) if tally.latencies else None,
        "raters": raters,
        "seconds": round(time.perf_counter() - t0, 2),
        "answers": tally.acknowledged,
    }
