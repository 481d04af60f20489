"""The study server: one page for raters and a small JSON API, on Starlette.

Raters: ``POST /api/session`` starts (or resumes) a rater and returns their secret token and
next item; ``POST /api/answer`` stores one answer (committed before the reply) and returns the
next item, or the completion code after the last one. A rater's token is the only way to read
or add their answers. Admins: ``GET /api/admin/progress`` and ``GET /api/admin/answers.csv``
with ``Authorization: Bearer TOKEN`` (the token printed at start).

Requests are checked before anything is stored: bodies over :data:`MAX_BODY` bytes (413,
after reading and dropping up to :data:`DRAIN_LIMIT` so that the client sees it),
not JSON objects (400), unknown or extra fields, wrong types or values (422), a wrong token
(403), an unknown item (404), an item out of the rater's order or a changed answer (409).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from underfire.raters.manifest import DATABASE, rater_plan, read_manifest
from underfire.raters.page import APP_JS, PAGE_HTML
from underfire.raters.store import AnswerStore, export_csv

__all__ = ["MAX_BODY", "StudyApp", "create_app", "serve"]

#: Largest request body accepted (an answer is about 150 bytes).
MAX_BODY = 4096
#: An oversized body is read and dropped up to this size before the 413 is sent.
DRAIN_LIMIT = 2 * 1024 * 1024
#: The longest answer time stored (ms); longer is clamped (a rater who left the tab open).
MAX_MS = 24 * 3600 * 1000
_RATER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_CSP = "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'"


class Refused(Exception):
    """A request refused with an HTTP status and a one-line reason; nothing was stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StudyApp:
    """What the endpoints share: the manifest, the raters' plans and the answer store."""

    def __init__(
        self,
        study: str | Path,
        *,
        admin_token: str | None = None,
        fsync: bool = False,
        completion_code: str | None = None,
    ) -> None:
        self.study = Path(study)
        self.manifest = read_manifest(self.study)
        self.items = {it["id"]: it for it in self.manifest["items"]}
        self.total = len(self.items)
        self.code = completion_code or str(self.manifest["completion_code"])
        self.admin_token = admin_token or secrets.token_urlsafe(18)
        self.store = AnswerStore(self.study / DATABASE, fsync=fsync)
        self._plans: dict[str, list[tuple[str, bool]]] = {}
        # rater → (token, item → side answered): this process is the only writer, so the
        # copy stays equal to the database; it saves two queries per answer
        self._raters: dict[str, tuple[str, dict[str, str]]] = {}

    def plan(self, rater: str) -> list[tuple[str, bool]]:
        plan = self._plans.get(rater)
        if plan is None:
            if len(self._plans) > 10_000:  # bounded memory: plans are cheap to recompute
                self._plans.clear()
            plan = self._plans[rater] = rater_plan(self.manifest, rater)
        return plan

    def rater(self, rater: str) -> tuple[str, dict[str, str]] | None:
        """The rater's token and answers so far (None for an unknown rater)."""
        known = self._raters.get(rater)
        if known is None:
            token = self.store.token(rater)
            if token is None:
                return None
            if len(self._raters) > 10_000:
                self._raters.clear()
            known = self._raters[rater] = (token, self.store.answered(rater))
        return known

    def item_view(self, rater: str, position: int) -> dict[str, Any] | None:
        """What the page shows at ``position`` (0-based), or None after the last item."""
        plan = self.plan(rater)
        if position >= len(plan):
            return None
        item_id, swapped = plan[position]
        item = self.items[item_id]
        left, right = (
            (item["image_b"], item["image_a"]) if swapped else (item["image_a"], item["image_b"])
        )
        return {
            "id": item_id,
            "question": self.manifest["question"].format(target=item["target"]),
            "target": item["target"],
            "left": "/" + left,
            "right": "/" + right,
            "position": position + 1,
            "total": self.total,
        }

    def state(self, rater: str, token: str) -> dict[str, Any]:
        record = self.rater(rater)
        done = len(record[1]) if record is not None else 0
        finished = done >= self.total
        return {
            "rater": rater,
            "token": token,
            "done": done,
            "total": self.total,
            "item": None if finished else self.item_view(rater, done),
            "code": self.code if finished else None,
        }

    def session(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, required=(), optional=("rater", "token"))
        rater, token = body.get("rater"), body.get("token")
        if rater is None:
            rater = "anon-" + secrets.token_hex(8)
        if not isinstance(rater, str) or not _RATER.match(rater):
            raise Refused(422, "rater must be 1-64 letters, digits, '.', '_' or '-'")
        if token is not None and not isinstance(token, str):
            raise Refused(422, "token must be a string")
        record = self.rater(rater)
        if record is None:
            token = secrets.token_urlsafe(24)
            if not self.store.add_rater(rater, token):
                raise Refused(409, "this rater id was registered at the same moment; reload")
            return self.state(rater, token)
        if token is None or not secrets.compare_digest(record[0], token):
            raise Refused(403, "this rater id has started already; continue in the same browser")
        return self.state(rater, record[0])

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        _fields(body, required=("rater", "token", "item", "choice", "ms"), optional=())
        rater, token, item, choice, ms = (
            body[k] for k in ("rater", "token", "item", "choice", "ms")
        )
        if not all(isinstance(v, str) for v in (rater, token, item)):
            raise Refused(422, "rater, token and item must be strings")
        if choice not in ("left", "right"):
            raise Refused(422, "choice must be 'left' or 'right'")
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
            raise Refused(422, "ms must be a whole number of milliseconds >= 0")
        record = self.rater(rater)
        if record is None or not secrets.compare_digest(record[0], token):
            raise Refused(403, "unknown rater or wrong token")
        if item not in self.items:
            raise Refused(404, "unknown item")
        known, answered = record
        plan = self.plan(rater)
        position = len(answered)
        if item not in answered and (position >= len(plan) or plan[position][0] != item):
            raise Refused(409, "answer the items in the order they are shown")
        swapped = dict(plan)[item] if item in answered else plan[position][1]
        chosen = "b" if (choice == "left") == swapped else "a"
        outcome = self.store.add_answer(
            rater, item, position, choice, chosen, swapped, min(ms, MAX_MS)
        )
        if outcome == "conflict":
            raise Refused(409, "this item was answered already with the other image")
        answered[item] = choice
        return {"stored": True, "duplicate": outcome == "duplicate"} | self.state(rater, known)

    def admin(self, authorization: str | None) -> None:
        expected = f"Bearer {self.admin_token}"
        if authorization is None or not secrets.compare_digest(authorization, expected):
            raise Refused(401, "admin endpoints need the header Authorization: Bearer TOKEN")


def _fields(body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    missing = [k for k in required if k not in body]
    extra = sorted(set(body) - set(required) - set(optional))
    if missing or extra:
        raise Refused(422, f"missing fields: {missing}; unknown fields: {extra}")


def create_app(app_state: StudyApp) -> Any:
    """The Starlette application serving ``app_state``'s study."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def read_json(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise Refused(400, "bad Content-Length")
        if declared is not None and int(declared) > DRAIN_LIMIT:
            raise Refused(413, f"request bodies are limited to {MAX_BODY} bytes")
        body, size = b"", 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= MAX_BODY:
                body += chunk
            elif size > DRAIN_LIMIT:
                break  # not worth reading further: the connection is closed after the 413
        if size > MAX_BODY:
            # read (and dropped) up to DRAIN_LIMIT so that the client, still sending, gets
            # the 413 rather than a reset connection
            raise Refused(413, f"request bodies are limited to {MAX_BODY} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the body must be a JSON object") from None
        if not isinstance(data, dict):
            raise Refused(400, "the body must be a JSON object")
        return data

    def reply(data: Any, status: int = 200) -> Response:
        return JSONResponse(data, status, headers=_SECURITY | {"Cache-Control": "no-store"})

    def endpoint(handler: Any) -> Any:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as err:
                return reply({"error": str(err)}, err.status)

        return run

    async def session(request: Request) -> Response:
        return reply(app_state.session(await read_json(request)))

    async def answer(request: Request) -> Response:
        return reply(app_state.answer(await read_json(request)))

    async def progress(request: Request) -> Response:
        app_state.admin(request.headers.get("authorization"))
        return reply(
            app_state.store.progress(app_state.total) | {"items_per_rater": app_state.total}
        )

    async def answers_csv(request: Request) -> Response:
        app_state.admin(request.headers.get("authorization"))
        text = export_csv(app_state.store.rows(), app_state.manifest)
        return Response(
            text, media_type="text/csv", headers=_SECURITY | {"Cache-Control": "no-store"}
        )

    async def page(request: Request) -> Response:
        headers = _SECURITY | {"Content-Security-Policy": _CSP}
        return Response(PAGE_HTML, media_type="text/html; charset=utf-8", headers=headers)

    async def script(request: Request) -> Response:
        return Response(APP_JS, media_type="text/javascript; charset=utf-8", headers=_SECURITY)

    async def health(request: Request) -> Response:
        return reply({"ok": True, "items": app_state.total})

    routes = [
        Route("/", endpoint(page)),
        Route("/app.js", endpoint(script)),
        Route("/healthz", endpoint(health)),
        Route("/api/session", endpoint(session), methods=["POST"]),
        Route("/api/answer", endpoint(answer), methods=["POST"]),
        Route("/api/admin/progress", endpoint(progress)),
        Route("/api/admin/answers.csv", endpoint(answers_csv)),
        Mount("/images", StaticFiles(directory=app_state.study / "images")),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app_state.store.close()

    return Starlette(routes=routes, lifespan=lifespan)


def serve(
    study: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    admin_token: str | None = None,
    fsync: bool = False,
    completion_code: str | None = None,
    say: Any = print,
) -> None:
    """Serve ``study`` until interrupted (uvicorn, one process: SQLite has one writer)."""
    import uvicorn

    state = StudyApp(study, admin_token=admin_token, fsync=fsync, completion_code=completion_code)
    app = create_app(state)
    shown = f"[{host}]" if ":" in host else host
    say(f"serving {study} ({state.total} items per rater) at http://{shown}:{port}/")
    say(f"raters open http://{shown}:{port}/?PROLIFIC_PID=ID (or without an id)")
    say(f"admin token: {state.admin_token}")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
