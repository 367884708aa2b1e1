"""The callback server (contract section 3), on ``INTERNAL_JOBS_CALLBACK_PORT``.

``POST /callback`` (and ``POST /``), headers ``X-Worker-Id``, ``X-Job-Id``, optional
``X-Job-Error: true`` (any case) and ``X-Job-Signature``; body ``{"status": "success",
"result": ...}`` | ``{"status": "error", "error": "..."}`` | ``{"status": "progress",
"progress": 0..100, "message": "..."}``. An empty body means success (or error with
``X-Job-Error: true``), as the reference's function wrapper may send.

Answers: 200 settled (or the same callback again: nothing changes), 400 malformed headers or
body, 401 bad or missing signature when ``JOBS_SIGNING_SECRET`` is set, 404 unknown job, 409 the
job is not locked by that worker (or already finished otherwise), 503 database unavailable.

Also ``GET /health/liveness``, ``GET /health/readiness`` (database reachable) and
``GET /metrics``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from jobfn import protocol
from jobservice.logs import event
from jobservice.metrics import CONTENT_TYPE, Metrics
from jobservice.queries import Queries

log = logging.getLogger("jobservice.callbacks")

MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Callback:
    """A well-formed callback."""

    worker_id: str
    job_id: int
    status: Literal["success", "error", "progress"]
    result: str | None = None
    error: str | None = None
    retryable: bool = True
    progress: int = 0
    message: str | None = None


class RejectedError(Exception):
    """A callback refused with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_callback(
    headers: dict[str, str], body: bytes, *, secret: str | None, now: float
) -> Callback:
    """Validate a callback's headers (lower-case names) and body; raise :class:`RejectedError`."""
    raw_id = headers.get(protocol.HEADER_JOB_ID, "").strip()
    worker_id = headers.get(protocol.HEADER_WORKER_ID, "").strip()
    if not raw_id:
        raise RejectedError(400, "missing X-Job-Id header")
    if not raw_id.isdecimal() or len(raw_id) > 19:
        raise RejectedError(400, f"X-Job-Id must be a decimal job id, got {raw_id[:40]!r}")
    if not worker_id:
        raise RejectedError(400, "missing X-Worker-Id header")
    if secret is not None and not protocol.verify(
        secret, headers.get(protocol.HEADER_SIGNATURE), raw_id, body, now=now
    ):
        raise RejectedError(401, "missing, wrong or stale X-Job-Signature")
    job_error = headers.get(protocol.HEADER_JOB_ERROR, "").strip().lower() == "true"

    document: dict[str, Any] = {}
    if body.strip():
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            raise RejectedError(400, f"body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise RejectedError(400, "body must be a JSON object")
        document = parsed
    status = document.get("status")
    if status is None:
        status = "error" if job_error else "success"
    if status not in ("success", "error", "progress"):
        raise RejectedError(400, 'body "status" must be "success", "error" or "progress"')
    if job_error:
        status = "error"
    job_id = int(raw_id)

    if status == "progress":
        progress = document.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise RejectedError(400, 'body "progress" must be a number from 0 to 100')
        if not 0 <= progress <= 100:
            raise RejectedError(400, 'body "progress" must be a number from 0 to 100')
        message = document.get("message")
        if message is not None and not isinstance(message, str):
            raise RejectedError(400, 'body "message" must be a string')
        return Callback(worker_id, job_id, "progress", progress=int(progress), message=message)
    if status == "error":
        error = document.get("error")
        if error is None or error == "":
            error = document.get("message")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            error = error["message"]
        if error is None or error == "":
            text = "unknown error"
        elif isinstance(error, str):
            text = error
        else:
            text = json.dumps(error, ensure_ascii=False)
        retry = document.get("retry")
        return Callback(worker_id, job_id, "error", error=text, retryable=retry is not False)
    result = document.get("result")
    return Callback(
        worker_id,
        job_id,
        "success",
        result=None if result is None else json.dumps(result, ensure_ascii=False),
    )


class CallbackServer:
    """The callback server's aiohttp application and its database work."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        signing_secret: str | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.secret = signing_secret
        self.metrics = metrics or Metrics()
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.add_routes(
            [
                web.post("/callback", self.callback),
                web.post("/", self.callback),
                web.get("/health/liveness", self.liveness),
                web.get("/health/readiness", self.readiness),
                web.get("/metrics", self.render_metrics),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- serving ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (``0``: any free port); returns the port."""
        sock = socket.create_server((host, port), reuse_port=False)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self.port = int(sock.getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- routes -----------------------------------------------------------------------------

    async def liveness(self, request: web.Request) -> web.Response:
        """The process is up."""
        return web.json_response({"status": "ok"})

    async def readiness(self, request: web.Request) -> web.Response:
        """The database answers."""
        try:
            async with self.pool.connection(timeout=2.0) as conn:
                await conn.execute(self.queries.ping)
        except (psycopg.Error, OSError) as exc:
            return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
        return web.json_response({"status": "ok"})

    async def render_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text exposition."""
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def callback(self, request: web.Request) -> web.Response:
        """Settle a job, or record its progress, from a function's callback."""
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            cb = parse_callback(headers, body, secret=self.secret, now=time.time())
        except RejectedError as exc:
            event(
                log,
                logging.WARNING,
                "callback_rejected",
                exc.message,
                status=exc.status,
                job_id=headers.get(protocol.HEADER_JOB_ID),
                worker_id=headers.get(protocol.HEADER_WORKER_ID),
            )
            return web.json_response({"error": exc.message}, status=exc.status)
        try:
            status, outcome, message = await self.settle(cb)
        except (psycopg.Error, OSError) as exc:
            event(log, logging.ERROR, "callback_failed", f"database error: {exc}", job_id=cb.job_id)
            return web.json_response({"error": f"database unavailable: {exc}"}, status=503)
        event(
            log,
            logging.INFO if status < 400 else logging.WARNING,
            "callback",
            message,
            job_id=cb.job_id,
            worker_id=cb.worker_id,
            callback_status=cb.status,
            outcome=outcome,
            status=status,
        )
        reply: dict[str, object] = {
            "workerId": cb.worker_id,
            "jobId": str(cb.job_id),
            "outcome": outcome,
        }
        if status >= 400:
            reply["error"] = message
        return web.json_response(reply, status=status)

    # -- database ---------------------------------------------------------------------------

    async def settle(self, cb: Callback) -> tuple[int, str, str]:
        """Apply ``cb``; returns (HTTP status, outcome word, message)."""
        params: dict[str, Any] = {"worker_id": cb.worker_id, "job_ids": [cb.job_id]}
        async with self.pool.connection() as conn:
            if cb.status == "success":
                params["results"] = [cb.result]
                cur = await conn.execute(self.queries.complete_jobs, params)
                if await cur.fetchall():
                    return 200, "completed", f"job {cb.job_id} completed"
            elif cb.status == "error":
                params |= {"messages": [cb.error], "retryable": [cb.retryable]}
                cur = await conn.execute(self.queries.fail_jobs, params)
                rows = await cur.fetchall()
                if rows:
                    outcome = str(rows[0][1])
                    return 200, outcome, f"job {cb.job_id} failed: {cb.error} ({outcome})"
            else:
                cur = await conn.execute(
                    self.queries.report_progress,
                    {
                        "worker_id": cb.worker_id,
                        "job_id": cb.job_id,
                        "progress": cb.progress,
                        "message": cb.message,
                    },
                )
                row = await cur.fetchone()
                if row is not None and row[0]:
                    return 200, "progress", f"job {cb.job_id} at {cb.progress}%"
            return await self._explain(conn, cb)

    async def _explain(
        self, conn: psycopg.AsyncConnection[Any], cb: Callback
    ) -> tuple[int, str, str]:
        """Why nothing changed: the same callback again (200), 409 or 404."""
        cur = await conn.execute(self.queries.job_lock, {"job_id": cb.job_id})
        row = await cur.fetchone()
        if row is not None:
            locked_by, last_error = row
            if cb.status == "error" and locked_by is None and last_error == cb.error:
                return 200, "retry", f"job {cb.job_id}: this error was already recorded"
            holder = f"locked by {locked_by}" if locked_by else "not running"
            return 409, "conflict", f"job {cb.job_id} is {holder}, not by worker {cb.worker_id}"
        cur = await conn.execute(self.queries.job_finished, {"job_id": cb.job_id})
        done = await cur.fetchone()
        if done is None:
            return 404, "unknown", f"no job {cb.job_id}"
        finished_by, status, last_error = done
        same = finished_by == cb.worker_id and (
            (cb.status == "success" and status == "completed")
            or (cb.status == "error" and status == "failed" and last_error == cb.error)
        )
        if same:
            return 200, str(status), f"job {cb.job_id} was already {status}"
        return 409, "conflict", f"job {cb.job_id} already {status} (worker {finished_by})"
