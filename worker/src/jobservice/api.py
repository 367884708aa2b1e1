"""The HTTP API of the job service, on the callback server's port: JSON in and out.

``GET /api/jobs`` (filters ``status`` (comma-separated), ``task``, ``queue``, ``database_id``,
``limit`` ≤ 500, ``offset``), ``GET /api/jobs/{id}``, ``POST /api/jobs``,
``POST /api/jobs/{id}/retry``, ``POST /api/jobs/{id}/cancel``, ``GET /api/stats``,
``GET /api/overview`` (what the dashboard shows), ``GET /api/schedules``, and Server-Sent
Events: ``GET /api/events`` (every job) and ``GET /api/jobs/{id}/events`` (one job). Access
rules: :mod:`jobservice.apiauth`. Errors are ``{"error": "<one line naming the field>"}``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
from aiohttp import web
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from jobservice import apiauth, inputs
from jobservice.events import EventHub, Subscriber, message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REFUSED = (psycopg.errors.DataError, psycopg.errors.IntegrityError, psycopg.errors.RaiseException)
"""Database errors that mean "this input is not acceptable" (answered 400)."""
KEEPALIVE = 15.0
"""Seconds between SSE comments that keep idle proxies from closing a quiet stream."""
GONE_CHECK = 1.0
"""Seconds between checks that an SSE client is still connected (aiohttp does not cancel the
handler of a request whose client went away, so a quiet stream must look for itself)."""
MAX_JOB_ID = 2**63 - 1
MAX_BODY_FIELDS = ("task", "payload", "run_at", "in", "priority", "key", "queue")


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def dumps(value: object) -> str:
    """JSON text of API answers (times ISO 8601)."""
    return json.dumps(value, default=_default)


def reply(data: object, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.json_response(data, status=status, dumps=dumps)


def error(status: int, text: str) -> web.Response:
    """A JSON error answer: ``{"error": text}``."""
    return reply({"error": text}, status)


class BadRequestError(ValueError):
    """A request field is malformed (answered 400 with the message)."""


def job_request(body: object, default_database_id: str | None) -> dict[str, Any]:
    """The ``add_job`` parameters of a ``POST /api/jobs`` body, checked field by field."""
    if not isinstance(body, dict):
        raise BadRequestError("body: expected a JSON object")
    unknown = sorted(set(body) - {*MAX_BODY_FIELDS, "max_attempts", "database_id"})
    if unknown:
        raise BadRequestError(f"{unknown[0]}: unknown field")
    task = body.get("task")
    if not isinstance(task, str) or not task.strip():
        raise BadRequestError("task: expected a non-empty string")
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        raise BadRequestError("payload: expected a JSON object")
    for name in ("priority", "max_attempts"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRequestError(f"{name}: expected an integer")
        if value is not None and not -(2**31) <= value < 2**31:
            raise BadRequestError(f"{name}: expected an integer from {-(2**31)} to {2**31 - 1}")
    if body.get("max_attempts") is not None and body["max_attempts"] < 1:
        raise BadRequestError("max_attempts: expected an integer ≥ 1")
    for name in ("key", "queue", "run_at", "in", "database_id"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadRequestError(f"{name}: expected a string")
    try:
        when = inputs.run_at(body.get("run_at"), body.get("in"))
        db_id = inputs.parse_uuid("database_id", body.get("database_id")) or default_database_id
    except inputs.InputError as exc:
        text = str(exc).replace("--run-at", "run_at").replace("--in", "in")
        raise BadRequestError(text) from None
    if db_id is None:
        raise BadRequestError("database_id: expected a UUID (no JOBS_DATABASE_ID default is set)")
    return {
        "task": task,
        "payload": Json(payload),
        "db_id": db_id,
        "job_key": body.get("key"),
        "queue_name": body.get("queue"),
        "run_at": when,
        "max_attempts": body.get("max_attempts"),
        "priority": body.get("priority"),
    }


def list_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """The ``list_jobs`` parameters of ``GET /api/jobs``'s query string."""
    try:
        statuses = inputs.parse_statuses([query["status"]] if query.get("status") else None)
        db_id = inputs.parse_uuid("database_id", query.get("database_id"))
    except inputs.InputError as exc:
        raise BadRequestError(str(exc).replace("--status", "status")) from None
    numbers = {}
    for name, default, top in (("limit", 50, 500), ("offset", 0, 10**9)):
        raw = query.get(name, str(default))
        if not raw.isdecimal() or not int(name == "limit") <= int(raw) <= top:
            low = int(name == "limit")
            raise BadRequestError(f"{name}: expected an integer from {low} to {top}")
        numbers[name] = int(raw)
    return {
        "statuses": statuses,
        "task": query.get("task") or None,
        "queue": query.get("queue") or None,
        "database_id": db_id,
        **numbers,
    }


class Api:
    """The API routes over one pool, schema queries and event hub."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Mapping[str, sql.Composed],
        hub: EventHub,
        *,
        token: str | None,
        default_database_id: str | None = None,
    ) -> None:
        self.pool = pool
        self.q = queries
        self.hub = hub
        self.token = token
        self.default_database_id = default_database_id

    # -- plumbing -----------------------------------------------------------------------------

    async def rows(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run a named query on a pooled connection."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.q[name], params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    def allowed(self, request: web.Request) -> bool:
        """May this request read (see :mod:`jobservice.apiauth`)?"""
        return apiauth.allowed(
            self.token,
            authorization=request.headers.get("Authorization"),
            cookie=request.cookies.get(apiauth.COOKIE),
            host=request.headers.get("Host"),
        )

    def guard(self, handler: Handler) -> Handler:
        """``handler`` behind the access rules; database trouble answers 503."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.allowed(request):
                refused = error(401, "missing or wrong bearer token (JOBS_API_TOKEN)")
                refused.headers["WWW-Authenticate"] = 'Bearer realm="jobs"'
                return refused
            if request.method != "GET" and not apiauth.same_origin(
                request.headers.get("Origin"),
                request.headers.get("Host"),
                request.headers.get("Sec-Fetch-Site"),
            ):
                return error(403, "cross-origin request refused")
            try:
                return await handler(request)
            except BadRequestError as exc:
                return error(400, str(exc))
            except NoSuchJobError as exc:
                return error(404, str(exc))
            except (psycopg.OperationalError, TimeoutError) as exc:
                return error(503, f"database unavailable: {' '.join(str(exc).split())}")
            except REFUSED as exc:
                first = (str(exc).strip().splitlines() or ["refused"])[0]
                return error(400, f"refused by the database: {first}")

        return guarded

    def routes(self) -> list[web.RouteDef]:
        """The route table to add to an aiohttp application."""
        g = self.guard
        return [
            web.get("/api/jobs", g(self.list_jobs)),
            web.post("/api/jobs", g(self.add_job)),
            web.get("/api/jobs/{id:\\d+}", g(self.get_job)),
            web.post("/api/jobs/{id:\\d+}/retry", g(partial(self.act, "retry_jobs", "retried"))),
            web.post(
                "/api/jobs/{id:\\d+}/cancel", g(partial(self.act, "cancel_jobs", "cancelled"))
            ),
            web.get("/api/jobs/{id:\\d+}/events", g(self.job_events)),
            web.get("/api/events", g(self.all_events)),
            web.get("/api/stats", g(self.stats)),
            web.get("/api/schedules", g(self.schedules)),
            web.get("/api/overview", g(self.overview_handler)),
        ]

    # -- reading ------------------------------------------------------------------------------

    async def list_jobs(self, request: web.Request) -> web.Response:
        return reply(await self.rows("list_jobs", list_filters(request.query)))

    async def get_job(self, request: web.Request) -> web.Response:
        job_id = job_id_of(request)
        rows = await self.rows("job", {"id": job_id})
        return reply(rows[0]) if rows else error(404, f"job {job_id}: no such job")

    async def stats(self, request: web.Request) -> web.Response:
        return reply(await self.rows("stats", {}))

    async def schedules(self, request: web.Request) -> web.Response:
        return reply(await self.rows("schedules", {"id": None}))

    async def overview(self) -> dict[str, Any]:
        """Counts per status, per-task figures, running/failed jobs, schedules."""
        counts = dict.fromkeys(inputs.STATUSES, 0)
        counts.update({r["status"]: int(r["jobs"]) for r in await self.rows("counts", {})})
        base = {"task": None, "queue": None, "database_id": None, "offset": 0}
        running = await self.rows("list_jobs", {**base, "statuses": ["running"], "limit": 50})
        failed = await self.rows("list_jobs", {**base, "statuses": ["failed"], "limit": 20})
        recent = await self.rows("list_jobs", {**base, "statuses": None, "limit": 20})
        return {
            "now": datetime.now(UTC),
            "counts": counts,
            "tasks": await self.rows("stats", {}),
            "running": running,
            "failed": failed,
            "recent": recent,
            "schedules": await self.rows("schedules", {"id": None}),
        }

    async def overview_handler(self, request: web.Request) -> web.Response:
        return reply(await self.overview())

    # -- acting -------------------------------------------------------------------------------

    async def add_job(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequestError("body: expected JSON") from None
        params = job_request(body, self.default_database_id)
        [row] = await self.rows("add_job", params)
        [job] = await self.rows("job", {"id": int(row["id"])})
        return reply(job, 201)

    async def act(self, query: str, did: str, request: web.Request) -> web.Response:
        job_id = job_id_of(request)
        params: dict[str, Any] = {"ids": [job_id], "message": "cancelled by an operator"}
        if query == "cancel_jobs" and request.can_read_body:
            params["message"] = cancel_message(await request.text(), params["message"])
        done = await self.rows(query, params)
        rows = await self.rows("job", {"id": job_id})
        if not rows:
            return error(404, f"job {job_id}: no such job")
        if not done:
            return error(409, f"job {job_id} is {rows[0]['status']}: not {did}")
        return reply(rows[0])

    # -- live events --------------------------------------------------------------------------

    async def all_events(self, request: web.Request) -> web.StreamResponse:
        return await self.stream(request, self.hub.subscribe(None))

    async def job_events(self, request: web.Request) -> web.StreamResponse:
        job_id = job_id_of(request)
        # Subscribe before reading the job: a change while it is read is then sent, not lost.
        sub = self.hub.subscribe(job_id)
        try:
            rows = await self.rows("jobs_by_ids", {"ids": [job_id]})
        except BaseException:
            self.hub.unsubscribe(sub)
            raise
        if not rows:
            self.hub.unsubscribe(sub)
            return error(404, f"job {job_id}: no such job")
        return await self.stream(request, sub, first=message("job", rows[0]))

    async def stream(
        self, request: web.Request, sub: Subscriber, first: bytes | None = None
    ) -> web.StreamResponse:
        """An SSE stream of ``sub``'s messages; ``sub`` is unsubscribed when it ends."""
        job_id = sub.job_id
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n" + message("ready", {"job_id": job_id}))
            if first is not None:
                await response.write(first)
            loop = asyncio.get_running_loop()
            quiet_since = loop.time()
            while not sub.dropped and not client_gone(request):
                try:
                    data = await asyncio.wait_for(sub.queue.get(), GONE_CHECK)
                except TimeoutError:
                    if loop.time() - quiet_since < KEEPALIVE:
                        continue
                    data = b": keepalive\n\n"
                if data and not sub.dropped:
                    await response.write(data)
                    quiet_since = loop.time()
        except ConnectionResetError:
            pass
        finally:
            self.hub.unsubscribe(sub)
        return response


def client_gone(request: web.Request) -> bool:
    """Has the client of ``request`` closed its connection?"""
    transport = request.transport
    return transport is None or transport.is_closing()


def job_id_of(request: web.Request) -> int:
    """The ``{id}`` of the path; one past any bigint can name no job (answered 404)."""
    job_id = int(request.match_info["id"])
    if job_id > MAX_JOB_ID:
        raise NoSuchJobError(job_id)
    return job_id


class NoSuchJobError(LookupError):
    """The path names a job id that cannot exist (answered 404)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id}: no such job")


def cancel_message(text: str, default: str) -> str:
    """The ``message`` of a ``POST /api/jobs/{id}/cancel`` body (optional; ``default``)."""
    if not text.strip():
        return default
    try:
        body = json.loads(text)
    except ValueError:
        raise BadRequestError("body: expected JSON") from None
    if not isinstance(body, dict):
        raise BadRequestError("body: expected a JSON object")
    unknown = sorted(set(body) - {"message"})
    if unknown:
        raise BadRequestError(f"{unknown[0]}: unknown field")
    message = body.get("message", default)
    if not isinstance(message, str) or not message.strip():
        raise BadRequestError("message: expected a non-empty string")
    return message


def default_database_id(env: Mapping[str, str]) -> str | None:
    """``JOBS_DATABASE_ID`` / ``DEFAULT_DATABASE_ID`` when it is a UUID, else ``None``."""
    for name in ("JOBS_DATABASE_ID", "DEFAULT_DATABASE_ID"):
        text = env.get(name, "").strip()
        if text:
            try:
                return str(uuid.UUID(text))
            except ValueError:
                return None
    return None
