"""JobApp: the ASGI application built from a :class:`~jobfn.function.JobFunction`.

The function holds the handler and its options; the app owns everything about serving it:
the callback sender, the background jobs, readiness and draining. ``POST`` (any path: the
reference worker appends the task name to its gateway URL) is handled by
:meth:`JobApp.handle_job` directly on the ASGI messages, the hot path the worker's in-process
dispatch goes through; ``GET /health/liveness``, ``GET /health/readiness``,
``GET /openapi.json`` and the ASGI lifespan go to a Starlette app built once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jobfn import protocol
from jobfn.asgi import in_process_caller
from jobfn.callback_sender import CallbackChannel, CallbackSender, CallbackTarget
from jobfn.handler import InvalidPayloadError
from jobfn.json_logs import JOB_LOGGER, emit_direct
from jobfn.openapi import openapi_document
from jobfn.types import Outcome

if TYPE_CHECKING:
    from jobfn.context import JobContext
    from jobfn.function import JobFunction

log = logging.getLogger("jobfn")

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

job_log = logging.getLogger(JOB_LOGGER)

ACCEPTED = Outcome(202, "accepted")
UNAUTHORIZED = "missing, invalid or stale X-Job-Signature"


class ClientGoneError(Exception):
    """The client disconnected before the request body arrived."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is over ``limit`` bytes."""
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGoneError
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body if len(body) <= limit else None
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGoneError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def too_large(limit: int) -> Outcome:
    """The outcome of a body over the size limit (permanent: it will not shrink)."""
    return Outcome(
        413, "too_large", error=f"request body is larger than {limit} bytes", retry=False
    )


def log_job(ctx: JobContext, outcome: Outcome, started: float) -> None:
    """Write the one log line of a finished (or refused) job."""
    level = (
        logging.INFO
        if outcome.status < 400
        else logging.WARNING
        if outcome.status < 500
        else logging.ERROR
    )
    if not job_log.isEnabledFor(level):
        return
    fields = ctx.fields
    fields["action"] = "run"
    fields["outcome"] = outcome.label
    fields["status"] = outcome.status
    fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if outcome.error is not None:
        fields["error"] = outcome.error
    exception = outcome.exception if outcome.label in ("error", "timeout") else None
    if exception is None and emit_direct(
        job_log, level, f"job {ctx.job_id or '-'} {ctx.task}: {outcome.label}", fields
    ):
        return  # the same line, written without a LogRecord
    # makeRecord + handle: the same record as job_log.log() without its stack walk.
    record = job_log.makeRecord(
        JOB_LOGGER,
        level,
        __file__,
        0,
        "job %s %s: %s",
        (ctx.job_id or "-", ctx.task, outcome.label),
        (type(exception), exception, exception.__traceback__) if exception else None,
        "log_job",
        fields,
    )
    job_log.handle(record)


async def send_reply(send: Send, outcome: Outcome) -> None:
    """Send ``outcome`` as the HTTP reply."""
    body = protocol.reply_body(outcome)
    await send(
        {
            "type": "http.response.start",
            "status": outcome.status,
            "headers": protocol.reply_headers(outcome, body),
        }
    )
    await send({"type": "http.response.body", "body": body})


class JobApp:
    """The ASGI app of one job function (``await app(scope, receive, send)``).

    ``POST`` runs a job; ``GET /health/liveness``, ``/health/readiness``, ``/openapi.json``
    and the lifespan (start-up checks, then draining background jobs) go to :attr:`routes`.
    """

    def __init__(self, fn: JobFunction) -> None:
        self.fn = fn
        self.sender = CallbackSender(fn.callback_policy)
        """Sends this function's callbacks (one shared HTTP client)."""
        self.ready = True
        """Whether ``/health/readiness`` answers ready (``False`` while draining)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._routes: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await self.handle_job(scope, receive, send)
        else:
            await self.routes(scope, receive, send)

    @property
    def routes(self) -> Starlette:
        """The Starlette app serving health, OpenAPI and lifespan (built once)."""
        if self._routes is None:
            self._routes = _build_routes(self)
        return self._routes

    async def handle_job(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one job request: read, check, run (or accept), reply, log, call back."""
        fn = self.fn
        started = time.perf_counter()
        job = protocol.parse_job_headers(scope["headers"])
        target = None
        refused_url: str | None = None
        if job.callback_url and job.worker_id and job.job_id:
            try:
                endpoint = protocol.callback_endpoint(job.callback_url)
            except ValueError:  # not a URL: nowhere to call back
                refused_url = job.callback_url
            else:
                target = CallbackTarget(
                    endpoint, job.worker_id, job.job_id, job.database_id, job.raw_attempt
                )
        signer = fn.signer
        caller = in_process_caller.get()
        if (
            target is not None
            and signer is None
            and not fn.callback_allow_list.allows(target.url)
            and (caller is None or target.url not in caller.callback_urls)
        ):
            # Unsigned: only allowed callback URLs (not an open relay). Our worker settles from
            # the reply, so a job that would send no outcome callback just runs without one.
            refused_url = target.url
            target = None
        channel = None if target is None else CallbackChannel(self.sender, target, signer)
        ctx = fn.context_for(job, callback=channel)

        limit = fn.max_body_size
        outcome: Outcome | None = None
        body = b""
        if job.content_length is not None and job.content_length > limit:
            outcome = too_large(limit)
        else:
            try:
                read = await read_body(receive, limit)
            except ClientGoneError:
                return
            if read is None:
                outcome = too_large(limit)
            else:
                body = read
        if (signer is not None and (caller is None or not caller.vouched)) and (
            outcome is not None
            or not signer.verify(
                job.signature, protocol.dispatch_envelope(job, body), now=time.time()
            )
        ):
            # An unauthenticated request does not get to run or to settle a job by callback.
            outcome = outcome or Outcome(401, "unauthorized", error=UNAUTHORIZED)
            await send_reply(send, outcome)
            log_job(ctx, outcome, started)
            return
        if refused_url is not None and (fn.background or not job.completion_reply):
            outcome = Outcome(
                400,
                "callback_refused",
                error=f"X-Callback-Url {refused_url} is not allowed (JOBS_CALLBACK_ALLOWED_URLS)",
            )
            await send_reply(send, outcome)
            log_job(ctx, outcome, started)
            return

        if outcome is None:
            try:
                payload = fn.handler.parse(body)
            except InvalidPayloadError as exc:
                outcome = exc.outcome
            else:
                if fn.background:
                    self.start_background(payload, ctx, channel, started)
                    await send_reply(send, ACCEPTED)
                    return
                outcome = await fn.handler.run(payload, ctx)

        await send_reply(send, outcome)
        log_job(ctx, outcome, started)
        if channel is not None and not job.completion_reply:
            await channel.send(protocol.callback_body(outcome), error=not outcome.ok)

    # -- background jobs ----------------------------------------------------------------------

    def start_background(
        self, payload: Any, ctx: JobContext, channel: CallbackChannel | None, started: float
    ) -> None:
        """Run the job in a task of its own; the outcome goes to the callback."""
        task = asyncio.get_running_loop().create_task(
            self._background(payload, ctx, channel, started), name=f"jobfn:{self.fn.name}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(
        self, payload: Any, ctx: JobContext, channel: CallbackChannel | None, started: float
    ) -> None:
        try:
            outcome = await self.fn.handler.run(payload, ctx)
        except asyncio.CancelledError:
            outcome = Outcome(500, "error", error="the function shut down before the job finished")
            log_job(ctx, outcome, started)
            if channel is not None:
                await channel.send(protocol.callback_body(outcome), error=True, attempts=1)
            raise
        log_job(ctx, outcome, started)
        if channel is not None:
            await channel.send(protocol.callback_body(outcome), error=not outcome.ok)

    @property
    def in_flight(self) -> int:
        """How many background jobs are running."""
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait for the background jobs (at most ``timeout`` s); whether all finished.

        Jobs still running after ``timeout`` are cancelled and reported as failed (retryable)
        through their callback.
        """
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        if not pending:
            return True
        log.warning(
            "cancelling %d background job(s) still running after %s s", len(pending), timeout
        )
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=self.sender.policy.timeout + 1)
        return False

    async def aclose(self) -> None:
        """Close the callback client (called on lifespan shutdown)."""
        await self.sender.aclose()


def _build_routes(app: JobApp) -> Starlette:
    """The Starlette app for everything but job requests (health, OpenAPI, lifespan)."""
    fn = app.fn

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        fn.start()
        app.ready = True
        try:
            yield
        finally:
            app.ready = False
            await app.drain(fn.shutdown_timeout)
            await app.aclose()

    async def liveness(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readiness(request: Request) -> Response:
        if app.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "draining"}, status_code=503)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(fn))

    async def index(request: Request) -> Response:
        return JSONResponse({"function": fn.name, "openapi": "/openapi.json"})

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/health/liveness", liveness, methods=["GET"]),
            Route("/health/readiness", readiness, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
