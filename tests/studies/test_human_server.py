"""The study server through its HTTP API: bad input stores nothing, 50 raters at once lose
and duplicate nothing, and a server killed with SIGKILL and restarted keeps every
acknowledged answer."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.studies.human_fixtures import (
    ADMIN,
    CODE,
    free_port,
    make_study,
    request,
    served,
    start_server,
    stop,
)

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def _answers(study: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(study / "answers.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return db.execute("SELECT rater, item, side FROM answers ORDER BY id").fetchall()
    finally:
        db.close()


def _simulate(url: str, *args: str, record: Path | None = None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "underfire", "study", "simulate", "--url", url, *args]
    if record is not None:
        cmd += ["--record", str(record)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bad_requests_get_4xx_and_store_nothing(tmp_path: Path) -> None:
    manifest = make_study(tmp_path, sources=2)
    with served(tmp_path) as url:
        status, alice = request(f"{url}/api/session", {"rater": "alice"})
        assert status == 200 and alice["done"] == 0 and alice["code"] is None
        _, bob = request(f"{url}/api/session", {"rater": "bob"})
        first = alice["item"]["id"]
        good = {
            "rater": "alice",
            "token": alice["token"],
            "item": first,
            "choice": "left",
            "ms": 900,
        }
        other_item = next(it["id"] for it in manifest["items"] if it["id"] != first)
        refused = [
            (good | {"item": "q999"}, 404),  # unknown item
            (good | {"token": bob["token"]}, 403),  # another rater's token
            (good | {"rater": "bob"}, 403),  # another rater with this rater's token
            (good | {"choice": "middle"}, 422),
            (good | {"choice": 1}, 422),
            (good | {"ms": -5}, 422),
            (good | {"ms": True}, 422),
            (good | {"extra": 1}, 422),
            ({k: v for k, v in good.items() if k != "choice"}, 422),
            (good | {"item": other_item}, 409),  # not the item shown
        ]
        for body, status in refused:
            assert request(f"{url}/api/answer", body)[0] == status, body
        assert request(f"{url}/api/answer", raw=b"{not json")[0] == 400
        assert request(f"{url}/api/answer", raw=b"[1, 2]")[0] == 400
        assert request(f"{url}/api/answer", raw=b"x" * 1_000_000)[0] == 413
        assert request(f"{url}/api/session", {"rater": "x" * 65})[0] == 422
        assert request(f"{url}/api/session", {"rater": "alice"})[0] == 403  # no token: not yours
        assert _answers(tmp_path) == []
        # a replay is idempotent; a changed answer is refused
        status, reply = request(f"{url}/api/answer", good)
        assert status == 200 and reply["stored"] and not reply["duplicate"] and reply["done"] == 1
        status, again = request(f"{url}/api/answer", good)
        assert status == 200 and again["duplicate"] and again["done"] == 1
        assert request(f"{url}/api/answer", good | {"choice": "right"})[0] == 409
        assert _answers(tmp_path) == [("alice", first, "left")]
        # admin endpoints need the token
        assert request(f"{url}/api/admin/progress")[0] == 401
        assert (
            request(f"{url}/api/admin/progress", headers={"Authorization": "Bearer nope"})[0] == 401
        )
        assert request(f"{url}/api/admin/answers.csv")[0] == 401
        auth = {"Authorization": f"Bearer {ADMIN}"}
        status, progress = request(f"{url}/api/admin/progress", headers=auth)
        assert status == 200 and progress["raters"] == 2 and progress["answers"] == 1
        status, text = request(f"{url}/api/admin/answers.csv", headers=auth)
        assert status == 200 and text.count("\n") == 2 and f"alice,{first}" in text


def test_a_rater_finishes_and_gets_the_completion_code(tmp_path: Path) -> None:
    make_study(tmp_path, sources=1, checks=1)
    with served(tmp_path) as url:
        _, state = request(f"{url}/api/session", {"rater": "PID_1"})
        token, seen = state["token"], []
        while state["item"] is not None:
            seen.append(state["item"]["id"])
            _, state = request(
                f"{url}/api/answer",
                {"rater": "PID_1", "token": token, "item": seen[-1], "choice": "right", "ms": 10},
            )
        assert state["code"] == CODE and state["done"] == state["total"] == 2
        assert sorted(seen) == ["q001", "q002"]
        # coming back: the same token continues (here: finished), the code is shown again
        _, back = request(f"{url}/api/session", {"rater": "PID_1", "token": token})
        assert back["code"] == CODE and back["item"] is None


def test_fifty_raters_at_once_store_every_acknowledged_answer_once(tmp_path: Path) -> None:
    make_study(tmp_path, models=("normal", "distilled", "gradreg"), sources=7, checks=1)
    record = tmp_path / "acknowledged.json"
    with served(tmp_path) as url:
        sim = _simulate(url, "--raters", "50", "--answers", "20", "--timeout", "60", record=record)
        out, err = sim.communicate(timeout=120)
        assert sim.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    print(f"50 raters x 20 answers on loopback: {result}")
    assert result["acknowledged"] == 1000 and result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] < 5000
    stored = _answers(tmp_path)
    acknowledged = {tuple(p) for p in json.loads(record.read_text())}
    assert len(stored) == 1000 and {(r, i) for r, i, _ in stored} == acknowledged


def test_answers_survive_sigkill_and_the_raters_continue(tmp_path: Path) -> None:
    make_study(tmp_path, models=("normal", "distilled", "gradreg"), sources=7, checks=1)
    record = tmp_path / "acknowledged.json"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    sim = _simulate(url, "--raters", "20", "--answers", "20", "--timeout", "60", record=record)
    try:
        deadline = time.monotonic() + 30
        auth = {"Authorization": f"Bearer {ADMIN}"}
        while request(f"{url}/api/admin/progress", headers=auth)[1]["answers"] < 80:
            assert time.monotonic() < deadline, "the simulated raters did not start"
            time.sleep(0.02)
        stop(server, signal.SIGKILL)
        assert server.returncode == -signal.SIGKILL
        before = len(_answers(tmp_path))
        assert before < 400, "the study ended before the server was killed"
        time.sleep(0.5)  # the raters meet a closed port and retry
        server = start_server(tmp_path, port)
        out, err = sim.communicate(timeout=120)
        assert sim.returncode == 0, err
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
        stop(server)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["acknowledged"] == 400, result
    stored = _answers(tmp_path)
    acknowledged = {tuple(p) for p in json.loads(record.read_text())}
    assert len(stored) == len({(r, i) for r, i, _ in stored}) == 400  # none duplicated
    assert acknowledged == {(r, i) for r, i, _ in stored}  # none lost


def test_simulate_loads_only_loopback_unless_told_and_stays_bounded() -> None:
    from underfire.raters.simulate import check_url, percentile, simulate

    assert check_url("http://127.0.0.1:8000") == ("127.0.0.1", 8000, False)
    assert check_url("http://localhost") == ("localhost", 80, False)
    assert check_url("https://[::1]:8443/") == ("::1", 8443, True)
    for url in ("http://10.1.2.3:8000", "http://192.168.0.5", "http://example.org"):
        with pytest.raises(ValueError, match="not a loopback address"):
            check_url(url)
    assert check_url("https://example.org", allow_remote=True) == ("example.org", 443, True)
    with pytest.raises(ValueError, match="http"):
        check_url("ftp://127.0.0.1")
    with pytest.raises(ValueError, match="raters must be"):
        simulate("http://127.0.0.1:9", raters=100_000)
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0
    assert percentile([], 99) is None
