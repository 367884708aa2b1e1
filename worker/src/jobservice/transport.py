"""Transports: how a job reaches its function. Running a job is one call whatever the
transport: ``transport.start(job)`` returns a future of its :class:`~jobservice.verdict.Verdict`
(``await transport.run(job)`` is the same, awaited).

- :class:`HttpTransport` POSTs the job to the function's URL over keep-alive connections,
  signed (``X-Job-Signature``, scheme v2, purpose ``dispatch``: see :mod:`jobfn.protocol`) when
  the worker has a secret: ``http://`` through the lean client of :mod:`jobservice.http_client`
  (request heads from a per-route :class:`jobfn.protocol.HttpDispatchHead`, no task per
  request), ``https://`` through aiohttp.
- :class:`AsgiTransport` calls an ASGI application imported into the worker
  (``JOBS_INPROCESS``) through a minimal ASGI server of its own (scope, body, collected
  response; no HTTP, no sockets). A ``jobfn`` function named there does not come here: it is
  called directly (:class:`jobservice.direct.DirectTransport`), without headers or a reply to
  encode. The call is not
  signed: nothing crosses a network, and the worker vouches for it through
  :data:`jobfn.asgi.in_process_caller` (a context variable no request can set), which also
  lets the function call back to this worker's callback URL. A function may answer and keep
  running (a 202 followed by background work): the verdict is returned as soon as the
  response is complete, and the rest runs on unhindered.

Both build the dispatch headers with :func:`jobfn.protocol.dispatch_headers` (the in-process
one through :class:`jobfn.protocol.AsgiDispatchHeaders`, the ``http://`` one through
:class:`jobfn.protocol.HttpDispatchHead`: templates made by that function once, so that each
job encodes only its own values) and read at most
``max_reply_bytes`` of the reply (counted after decompression): a larger reply fails the
attempt without being read into memory. What they share (worker id, callback URL, signer,
timeouts, the HTTP connection pool) is a :class:`Dispatch`.

Adding a transport: a class here with ``target``, ``breaker_key``, ``start(job)`` and
``run(job)``, and the rule in :class:`jobservice.routing.Router` that returns it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

import aiohttp
from yarl import URL

from jobfn import protocol
from jobfn.asgi import InProcessCaller, in_process_caller, post_scope
from jobservice import verdict
from jobservice.breaker import route_key
from jobservice.claimed_job import ClaimedJob
from jobservice.http_client import (
    CannotConnectError,
    HttpClient,
    Reply,
    ReplyTooLargeError,
)
from jobservice.verdict import Verdict

log = logging.getLogger("jobservice.transport")

Done = Callable[[Verdict], None]
Message = MutableMapping[str, Any]
Asgi = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]
"""An ASGI application ``app(scope, receive, send)``."""


def traceparent() -> str:
    """A fresh W3C ``traceparent`` (one span per attempt, sampled)."""
    raw = os.urandom(24).hex()
    return f"00-{raw[:32]}-{raw[32:]}-01"


class Transport(Protocol):
    """Sends one job to its function and returns the verdict on the attempt."""

    target: str
    """Where the jobs go (a URL, or ``module:attr``), for messages."""
    breaker_key: str | None
    """The circuit breaker this route reports to (``None``: it has none)."""

    def start(self, job: ClaimedJob) -> asyncio.Future[Verdict]:
        """Dispatch ``job`` now; the future of its verdict (never an error for anything the
        function does)."""
        ...

    async def run(self, job: ClaimedJob) -> Verdict:
        """``await start(job)``."""
        ...


class Dispatch:
    """What every transport of one worker shares: its identity, signer, limits, HTTP pool."""

    def __init__(
        self,
        *,
        worker_id: str,
        callback_url: str,
        concurrency: int,
        timeout_for: Callable[[str], float],
        signing_secret: str | Sequence[str] | None = None,
        max_reply_bytes: int = verdict.DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.worker_id = worker_id
        self.callback_url = callback_url
        self.concurrency = concurrency
        self.timeout_for = timeout_for
        secrets = [signing_secret] if isinstance(signing_secret, str) else signing_secret
        self.signer = protocol.Signer(secrets) if secrets else None
        self.max_reply_bytes = max_reply_bytes
        self.session: aiohttp.ClientSession | None = None
        self.client: HttpClient | None = None
        """The keep-alive pools of ``http://`` dispatches (open between start and close)."""
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}
        self._asgi_headers = protocol.AsgiDispatchHeaders(
            worker_id=worker_id, callback_url=callback_url
        )
        self.in_process = InProcessCaller(
            frozenset({protocol.callback_endpoint(callback_url)}), vouched=True
        )
        """In-process calls come from this worker: unsigned, and the function may call back
        here even without a secret of its own."""
        self.background: set[asyncio.Task[None]] = set()
        """In-process calls still running (after their reply, or not)."""

    async def start(self) -> None:
        """Open the HTTP connection pool (keep-alive, sized to the concurrency)."""
        if self.signer is None:
            log.warning(
                "no JOBS_SIGNING_SECRET: jobs are dispatched unsigned "
                "(functions that have a secret will refuse them with 401)",
                extra={"action": "start", "insecure": True},
            )
        if self.client is None:
            self.client = HttpClient(max_idle=self.concurrency)
        if self.session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, limit_per_host=0, keepalive_timeout=60
            )
            self.session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=True
            )

    async def close(self) -> None:
        """Close the HTTP connection pools and cancel in-process calls still running."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.session is not None:
            await self.session.close()
            self.session = None
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)

    def headers(
        self, job: ClaimedJob, *, signed: bool, content_length: bool
    ) -> list[tuple[str, str]]:
        """The dispatch headers of ``job`` (signed when asked and there is a secret)."""
        signer = self.signer if signed else None
        return protocol.dispatch_headers(
            worker_id=self.worker_id,
            callback_url=self.callback_url,
            job_id=str(job.id),
            task=job.task,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            body=job.payload,
            database_id=job.database_id,
            actor_id=job.actor_id,
            traceparent=traceparent(),
            signer=signer,
            timestamp=int(time.time()) if signer is not None else 0,
            content_length=content_length,
        )

    def asgi_headers(self, job: ClaimedJob) -> list[protocol.Header]:
        """The unsigned ASGI dispatch headers of ``job`` with ``Content-Length``: the same as
        ``asgi_headers(headers(job, signed=False, content_length=True))``, the constant pairs
        built once (:class:`jobfn.protocol.AsgiDispatchHeaders`)."""
        return self._asgi_headers.headers(
            job_id=str(job.id),
            task=job.task,
            attempt=job.attempts,
            max_attempts=job.max_attempts,
            body=job.payload,
            database_id=job.database_id,
            actor_id=job.actor_id,
            traceparent=traceparent(),
        )

    def timeout(self, task: str) -> aiohttp.ClientTimeout:
        """The HTTP timeout of ``task`` (cached)."""
        timeout = self._timeouts.get(task)
        if timeout is None:
            timeout = self._timeouts[task] = aiohttp.ClientTimeout(total=self.timeout_for(task))
        return timeout


class HttpTransport:
    """POST the job to ``url`` and read the reply."""

    __slots__ = ("_address", "_head", "breaker_key", "dispatch", "target", "url")

    def __init__(self, url: str, dispatch: Dispatch) -> None:
        self.target = url
        self.url = URL(url)
        self.breaker_key: str | None = route_key(url)
        self.dispatch = dispatch
        self._head: protocol.HttpDispatchHead | None = None
        self._address: tuple[str, int] | None = None
        host, port = self.url.raw_host, self.url.port
        plain = self.url.scheme == "http" and self.url.user is None  # credentials: aiohttp
        if plain and host is not None and port is not None:
            self._address = (host, port)
            self._head = protocol.HttpDispatchHead(
                target=self.url.raw_path_qs or "/",
                host=self.url.host_port_subcomponent or host,
                worker_id=dispatch.worker_id,
                callback_url=dispatch.callback_url,
                signer=dispatch.signer,
            )

    def start(self, job: ClaimedJob) -> asyncio.Future[Verdict]:
        head = self._head
        if head is None:  # https:// (or credentials in the URL): aiohttp
            return asyncio.ensure_future(self._run_aiohttp(job))
        dispatch = self.dispatch
        client = dispatch.client
        if client is None:
            raise RuntimeError("Dispatch.start() was not called")
        reply: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        try:
            data = head.head(
                job_id=str(job.id),
                task=job.task,
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                body=job.payload,
                database_id=job.database_id,
                actor_id=job.actor_id,
                traceparent=traceparent(),
                timestamp=int(time.time()) if dispatch.signer is not None else 0,
            )
        except ValueError as exc:  # it will not get better: fail the job for good
            reply.set_result(
                verdict.failure(f"cannot send to {self.target}: {exc}", permanent=True)
            )
            return reply
        target = self.target
        limit = dispatch.max_reply_bytes
        task = job.task

        def done(result: Reply | BaseException) -> None:
            if reply.done():  # the waiting worker was cancelled (shutdown)
                return
            if isinstance(result, Reply):
                reply.set_result(verdict.interpret(result.status, result.headers, result.body))
            elif isinstance(result, ReplyTooLargeError):
                reply.set_result(verdict.too_large(target, limit))
            elif isinstance(result, TimeoutError):
                reply.set_result(verdict.timed_out(target, dispatch.timeout_for(task)))
            elif isinstance(result, CannotConnectError):  # the request was not sent
                reply.set_result(verdict.connection_error(target, result, unreachable=True))
            else:
                reply.set_result(verdict.connection_error(target, result))

        assert self._address is not None
        client.origin(*self._address).request(
            data + job.payload, limit=limit, timeout=dispatch.timeout_for(task), done=done
        )
        return reply

    async def run(self, job: ClaimedJob) -> Verdict:
        return await self.start(job)

    async def _run_aiohttp(self, job: ClaimedJob) -> Verdict:
        dispatch = self.dispatch
        session = dispatch.session
        if session is None:
            raise RuntimeError("Dispatch.start() was not called")
        try:
            async with session.post(
                self.url,
                data=job.payload,
                headers=dispatch.headers(job, signed=True, content_length=False),
                timeout=dispatch.timeout(job.task),
                allow_redirects=False,
            ) as response:
                body = await read_capped(response, dispatch.max_reply_bytes)
                if body is None:
                    response.close()  # the rest is not read: the connection is not reused
                    return verdict.too_large(self.target, dispatch.max_reply_bytes)
                return verdict.interpret(response.status, response.headers, body)
        except TimeoutError:
            return verdict.timed_out(self.target, dispatch.timeout_for(job.task))
        except aiohttp.ClientConnectorError as exc:  # refused, DNS: the request was not sent
            return verdict.connection_error(self.target, exc, unreachable=True)
        except (aiohttp.ClientError, OSError) as exc:
            return verdict.connection_error(self.target, exc)


class AsgiTransport:
    """Call ``app`` (a ``jobfn`` function's ASGI interface) in this process."""

    __slots__ = ("app", "breaker_key", "dispatch", "target")

    def __init__(self, target: str, app: Asgi, dispatch: Dispatch) -> None:
        self.target = target
        self.app = app
        self.breaker_key: str | None = None
        self.dispatch = dispatch

    async def run(self, job: ClaimedJob) -> Verdict:
        return await self.start(job)

    def start(self, job: ClaimedJob) -> asyncio.Future[Verdict]:
        """Call the app in a task of its own (it may run on after its reply); the future is
        resolved as soon as the reply is complete."""
        dispatch = self.dispatch
        reply: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        headers = dispatch.asgi_headers(job)
        call = _AsgiCall(job.payload, _resolver(reply), dispatch.max_reply_bytes, self.target)
        caller = in_process_caller.set(dispatch.in_process)
        try:  # the task copies the context: the call is vouched for as this worker's
            task = asyncio.create_task(self._call(call, post_scope(headers), job.task))
        finally:
            in_process_caller.reset(caller)
        dispatch.background.add(task)  # removed by the task itself when it ends
        return reply

    async def _call(self, call: _AsgiCall, scope: Message, task_name: str) -> None:
        seconds = self.dispatch.timeout_for(task_name)
        task = asyncio.current_task()
        assert task is not None
        timer = call.timer = asyncio.get_running_loop().call_later(seconds, call.expire, task)
        target = self.target
        try:
            await self.app(scope, call.receive, call.send)
        except asyncio.CancelledError:
            if not call.timed_out:
                raise
            call.report(verdict.failure(f"timed out after {seconds:g} s in {target}"))
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            call.report(verdict.failure(f"in-process function {target} raised {detail}"))
        finally:
            timer.cancel()
            self.dispatch.background.discard(task)
        call.report(verdict.failure(f"in-process function {target} returned without a reply"))


def _resolver(future: asyncio.Future[Verdict]) -> Done:
    def resolve(result: Verdict) -> None:
        if not future.done():  # the waiting worker may have been cancelled (shutdown)
            future.set_result(result)

    return resolve


class _AsgiCall:
    """The server side of one in-process ASGI request."""

    __slots__ = (
        "body",
        "chunks",
        "closed",
        "done",
        "headers",
        "limit",
        "reported",
        "size",
        "status",
        "target",
        "timed_out",
        "timer",
    )

    def __init__(self, body: bytes, done: Done, limit: int, target: str) -> None:
        self.body: bytes | None = body
        self.done = done
        self.limit = limit
        self.target = target
        self.size = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.reported = False
        self.timed_out = False
        self.closed: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def report(self, result: Verdict) -> None:
        if not self.reported:
            self.reported = True
            if self.timer is not None:
                self.timer.cancel()
            if self.closed is not None and not self.closed.done():
                self.closed.set_result(None)
            self.done(result)

    def expire(self, task: asyncio.Task[Any]) -> None:
        if not self.reported:
            self.timed_out = True
            task.cancel()

    async def receive(self) -> Message:
        body = self.body
        if body is not None:
            self.body = None
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.reported:
            if self.closed is None:
                self.closed = asyncio.get_running_loop().create_future()
            await self.closed
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            for name, value in message.get("headers", ()):
                self.headers[bytes(name).decode("latin-1").lower()] = bytes(value).decode("latin-1")
        elif kind == "http.response.body":
            if self.reported:
                return  # answered (or refused as too large): the rest is dropped unread
            chunk = message.get("body", b"")
            if chunk:
                self.size += len(chunk)
                if self.size > self.limit:
                    self.chunks.clear()
                    self.report(verdict.too_large(f"in-process function {self.target}", self.limit))
                    return
                self.chunks.append(bytes(chunk))
            if not message.get("more_body", False):
                body = b"".join(self.chunks)
                self.report(verdict.interpret(self.status, self.headers, body))


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The reply body (decompressed), or ``None`` as soon as it exceeds ``limit`` bytes.

    A plain body of declared length within the limit is read at once; anything else (no length,
    or compressed: the declared length says nothing about the decompressed size) chunk by chunk,
    so a streamed or decompressed body stops at the limit without the rest being read.
    """
    length = response.content_length
    if length is not None and "content-encoding" not in response.headers:
        if length > limit:
            return None
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    content = response.content
    while True:
        chunk = await content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
