"""The callback server on ``INTERNAL_JOBS_CALLBACK_PORT`` (the callback protocol).

``POST /callback`` (and ``POST /``), headers ``X-Worker-Id``, ``X-Job-Id``, ``X-Job-Attempt``,
``X-Database-Id``, optional ``X-Job-Error: true`` (any case) and ``X-Job-Signature``; body
``{"status": "success", "result": ...}`` | ``{"status": "error", "error": "..."}`` |
``{"status": "progress", "progress": 0..100, "message": "..."}``. An empty body means success
(or error with ``X-Job-Error: true``), as the reference's function wrapper may send.

Signatures (scheme v2, :mod:`jobfn.protocol`): a callback must be signed with purpose
``callback`` over its worker, job, attempt, tenant, error flag and body, and over the callback
URL this server is configured with (``INTERNAL_JOBS_CALLBACK_URL``, with an empty path read as
``/callback``: the URL the worker gave the function), by ``JOBS_SIGNING_SECRET`` or
``JOBS_SIGNING_SECRET_PREVIOUS``. Only ``JOBS_INSECURE_CALLBACKS=true`` lets unsigned callbacks
in (the reference Node functions send them); a signature that is present is still checked
when the service has a secret.

A callback settles its job only for the attempt it names (``X-Job-Attempt``, required when
signed) and its tenant (``X-Database-Id``), checked in the same statement that settles it.

Answers: 200 settled (or the same callback again: nothing changes), 400 malformed headers or
body, 401 bad or missing signature, 404 unknown job, 409 the job is not held by that worker for
that attempt (the holder is never named), 503 database unavailable.

Outcomes are written through the service's :class:`~jobservice.store.JobStore`
(``complete_attempt``/``fail_attempt``/``progress_attempt``), which counts them in the same
metrics as the outcomes the worker writes.

Also ``GET /health/liveness``, ``GET /health/readiness`` (database reachable) and
``GET /metrics``.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from aiohttp import web

from jobfn import protocol
from jobservice.logs import event
from jobservice.metrics import CONTENT_TYPE
from jobservice.store import Attempt, JobStore
from jobservice.verdict import MAX_MESSAGE

log = logging.getLogger("jobservice.callback_server")

MAX_BODY = 1024 * 1024
MAX_DEPTH = 64
"""Deepest JSON nesting accepted in a callback body."""
MAX_BIGINT = 2**63 - 1
_MAX_HEADER = 256


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
    attempt: int | None = None
    """The attempt it settles (``None``: an unsigned callback that names none)."""
    database_id: str | None = None


class RejectedError(Exception):
    """A callback refused with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _decimal(name: str, raw: str, *, maximum: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > maximum:
        raise RejectedError(400, f"{name} must be a decimal number up to {maximum}")
    return int(raw)


def _header_text(name: str, raw: str) -> str:
    if len(raw) > _MAX_HEADER or not raw.isascii() or not raw.isprintable():
        raise RejectedError(400, f"{name} must be printable ASCII of at most {_MAX_HEADER} chars")
    return raw


def clean_text(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` without NUL characters or lone surrogates, cut to ``limit`` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _depth_ok(document: object, limit: int = MAX_DEPTH) -> bool:
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in value)
    return True


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _result_text(result: object) -> str:
    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise RejectedError(400, 'body "result" must be finite JSON') from None
    if "\\u0000" in text:
        raise RejectedError(400, 'body "result" must not contain NUL characters')
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RejectedError(400, 'body "result" must be valid Unicode') from None
    return text


def parse_callback(
    headers: dict[str, str],
    body: bytes,
    *,
    signer: protocol.Signer | None,
    callback_url: str,
    insecure: bool,
    now: float,
) -> Callback:
    """Validate a callback's headers (lower-case names) and body; raise :class:`RejectedError`.

    ``callback_url`` is the URL the signature must name (this server's callback endpoint).
    ``insecure``: an unsigned callback is accepted; one that carries a signature is still
    checked when there is a ``signer`` to check it with.
    """
    raw_id = headers.get(protocol.HEADER_JOB_ID, "").strip()
    worker_id = headers.get(protocol.HEADER_WORKER_ID, "").strip()
    if not raw_id:
        raise RejectedError(400, "missing X-Job-Id header")
    job_id = _decimal("X-Job-Id", raw_id, maximum=MAX_BIGINT)
    if not worker_id:
        raise RejectedError(400, "missing X-Worker-Id header")
    worker_id = _header_text("X-Worker-Id", worker_id)
    raw_attempt = headers.get(protocol.HEADER_ATTEMPT, "").strip()
    attempt = _decimal("X-Job-Attempt", raw_attempt, maximum=2**31 - 1) if raw_attempt else None
    database_id = headers.get(protocol.HEADER_DATABASE_ID, "").strip()
    if database_id:
        _header_text("X-Database-Id", database_id)
    raw_error = headers.get(protocol.HEADER_JOB_ERROR, "").strip()
    signature = headers.get(protocol.HEADER_SIGNATURE)
    if not insecure and signer is None:
        raise RejectedError(401, "missing, wrong or stale X-Job-Signature")
    if signer is not None and (signature or not insecure):
        envelope = protocol.Envelope(
            protocol.PURPOSE_CALLBACK,
            worker_id,
            raw_id,
            raw_attempt,
            database_id,
            callback_url,
            raw_error,
            body,
        )
        if not signer.verify(signature, envelope, now=now):
            raise RejectedError(401, "missing, wrong or stale X-Job-Signature")
        if attempt is None:
            raise RejectedError(400, "a signed callback must name its X-Job-Attempt")
    job_error = raw_error.lower() == "true"

    document: dict[str, Any] = {}
    if body.strip():
        try:
            parsed = json.loads(body, parse_constant=_not_json)
        except RecursionError:
            raise RejectedError(400, f"body is nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:
            raise RejectedError(400, f"body is not JSON: {clean_text(str(exc), 200)}") from None
        if not isinstance(parsed, dict):
            raise RejectedError(400, "body must be a JSON object")
        if not _depth_ok(parsed):
            raise RejectedError(400, f"body is nested deeper than {MAX_DEPTH} levels")
        document = parsed
    status = document.get("status")
    if status is None:
        status = "error" if job_error else "success"
    if status not in ("success", "error", "progress"):
        raise RejectedError(400, 'body "status" must be "success", "error" or "progress"')
    if job_error:
        status = "error"

    if status == "progress":
        progress = document.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise RejectedError(400, 'body "progress" must be a number from 0 to 100')
        if not 0 <= progress <= 100:
            raise RejectedError(400, 'body "progress" must be a number from 0 to 100')
        message = document.get("message")
        if message is not None and not isinstance(message, str):
            raise RejectedError(400, 'body "message" must be a string')
        return Callback(
            worker_id,
            job_id,
            "progress",
            progress=int(progress),
            message=None if message is None else clean_text(message),
            attempt=attempt,
            database_id=database_id or None,
        )
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
        return Callback(
            worker_id,
            job_id,
            "error",
            error=clean_text(text).strip() or "unknown error",
            retryable=retry is not False,
            attempt=attempt,
            database_id=database_id or None,
        )
    result = document.get("result")
    return Callback(
        worker_id,
        job_id,
        "success",
        result=None if result is None else _result_text(result),
        attempt=attempt,
        database_id=database_id or None,
    )


class CallbackServer:
    """The callback server's aiohttp application; outcomes go through ``store``."""

    def __init__(
        self,
        store: JobStore,
        *,
        signing_secret: str | Sequence[str] | None,
        callback_url: str = "",
        insecure: bool = False,
    ) -> None:
        self.store = store
        secrets = [signing_secret] if isinstance(signing_secret, str) else signing_secret
        self.signer = protocol.Signer(secrets) if secrets else None
        if self.signer is None and not insecure:
            raise ValueError(
                "CallbackServer needs a signing secret unless unsigned callbacks are allowed"
            )
        self.callback_url = protocol.callback_endpoint(callback_url) if callback_url else ""
        self.insecure = insecure
        self.metrics = store.metrics
        self.metrics.insecure_callbacks.set(1 if insecure else 0)
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
        if self.insecure:
            event(
                log,
                logging.WARNING,
                "insecure_callbacks",
                "JOBS_INSECURE_CALLBACKS=true: unsigned callbacks are accepted; anyone who "
                "reaches this port can complete or fail running jobs",
            )
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
            await self.store.ping(within=2.0)
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
            cb = parse_callback(
                headers,
                body,
                signer=self.signer,
                callback_url=self.callback_url,
                insecure=self.insecure,
                now=time.time(),
            )
        except RejectedError as exc:
            event(
                log,
                logging.WARNING,
                "callback_rejected",
                exc.message,
                status=exc.status,
                job_id=clean_text(headers.get(protocol.HEADER_JOB_ID, ""), 40),
                worker_id=clean_text(headers.get(protocol.HEADER_WORKER_ID, ""), 80),
            )
            return web.json_response({"error": exc.message}, status=exc.status)
        try:
            status, outcome, message = await self.settle(cb)
        except psycopg.DataError as exc:  # the callback's data, not the database, is at fault
            detail = clean_text(str(exc).splitlines()[0] if str(exc) else "", 200)
            event(log, logging.WARNING, "callback_rejected", detail, job_id=cb.job_id, status=400)
            return web.json_response(
                {"error": f"the database refused the callback's data: {detail}"}, status=400
            )
        except (psycopg.Error, OSError) as exc:
            event(log, logging.ERROR, "callback_failed", f"database error: {exc}", job_id=cb.job_id)
            return web.json_response({"error": "database unavailable"}, status=503)
        event(
            log,
            logging.INFO if status < 400 else logging.WARNING,
            "callback",
            message,
            job_id=cb.job_id,
            worker_id=cb.worker_id,
            attempt=cb.attempt,
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
        """Apply ``cb`` to the attempt it names; returns (HTTP status, outcome word, message)."""
        store = self.store
        held = Attempt(cb.worker_id, cb.job_id, cb.attempt, cb.database_id)
        if cb.status == "success":
            if await store.complete_attempt(held, cb.result):
                return 200, "completed", f"job {cb.job_id} completed"
        elif cb.status == "error":
            outcome = await store.fail_attempt(held, cb.error or "", cb.retryable)
            if outcome is not None:
                return 200, outcome, f"job {cb.job_id} failed: {cb.error} ({outcome})"
        elif await store.progress_attempt(held, cb.progress, cb.message):
            return 200, "progress", f"job {cb.job_id} at {cb.progress}%"
        return await self._explain(cb)

    def _same_attempt(self, cb: Callback, attempts: int, database_id: str | None) -> bool:
        return (cb.attempt is None or cb.attempt == attempts) and (
            cb.database_id is None or cb.database_id == database_id
        )

    async def _explain(self, cb: Callback) -> tuple[int, str, str]:
        """Why nothing changed: the same callback again (200), 409 or 404.

        The 409 message never names the worker that holds the job.
        """
        conflict = (
            409,
            "conflict",
            f"job {cb.job_id} is not held by worker {cb.worker_id}"
            + (f" for attempt {cb.attempt}" if cb.attempt is not None else ""),
        )
        row = await self.store.job_state(cb.job_id)
        if row is not None:
            locked_by, attempts, last_error, database_id = row
            if (
                cb.status == "error"
                and locked_by is None
                and last_error == cb.error
                and self._same_attempt(cb, attempts, database_id)
            ):
                return 200, "retry", f"job {cb.job_id}: this error was already recorded"
            return conflict
        done = await self.store.job_finished(cb.job_id)
        if done is None:
            return 404, "unknown", f"no job {cb.job_id}"
        finished_by, status, attempts, last_error, database_id = done
        same = (
            finished_by == cb.worker_id
            and self._same_attempt(cb, attempts, database_id)
            and (
                (cb.status == "success" and status == "completed")
                or (cb.status == "error" and status == "failed" and last_error == cb.error)
            )
        )
        if same:
            return 200, str(status), f"job {cb.job_id} was already {status}"
        return 409, "conflict", f"job {cb.job_id} is already finished"
