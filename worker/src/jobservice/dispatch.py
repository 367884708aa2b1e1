"""Sending a job to its function: over HTTP (aiohttp, keep-alive) or in-process (ASGI).

Both transports produce an :class:`~jobservice.outcome.Outcome` through the same reply reading
(:func:`jobservice.outcome.interpret`). The in-process transport calls a ``jobfn``
``JobFunction`` through its ASGI interface with a minimal ASGI server of its own (scope, body,
collected response; no HTTP, no sockets), so a function behaves the same both ways.

An in-process function may answer and keep running (a 202 followed by background work): the
outcome is reported as soon as the response is complete, and the rest runs on unhindered.

HTTP dispatches are signed (``X-Job-Signature``, scheme v2, purpose ``dispatch``: see
:mod:`jobfn.protocol`) when the worker has a secret. In-process calls are not: nothing crosses
a network, and the worker vouches for them through :data:`jobfn.asgi.in_process_caller` (a
context variable no request can set), which also lets the function call back to this worker's
callback URL. Both transports read at most ``max_reply_bytes`` of the reply (counted after
decompression): a larger reply fails the attempt without being read into memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import aiohttp
from yarl import URL

from jobfn import protocol
from jobfn.asgi import InProcessCaller, in_process_caller, post_scope
from jobservice import outcome
from jobservice.job import Job
from jobservice.outcome import Outcome

log = logging.getLogger("jobservice.dispatch")

Done = Callable[[Outcome], None]
Message = MutableMapping[str, Any]
Asgi = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


def traceparent() -> str:
    """A fresh W3C ``traceparent`` (one span per attempt, sampled)."""
    raw = os.urandom(24).hex()
    return f"00-{raw[:32]}-{raw[32:]}-01"


class Dispatcher:
    """Builds the dispatch headers and runs both transports for one worker."""

    def __init__(
        self,
        *,
        worker_id: str,
        callback_url: str,
        concurrency: int,
        timeout_for: Callable[[str], float],
        signing_secret: str | Sequence[str] | None = None,
        max_reply_bytes: int = outcome.DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.worker_id = worker_id
        self.callback_url = callback_url
        self.concurrency = concurrency
        self.timeout_for = timeout_for
        secrets = [signing_secret] if isinstance(signing_secret, str) else signing_secret
        self.signer = protocol.Signer(secrets) if secrets else None
        self.max_reply_bytes = max_reply_bytes
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}
        self._asgi_fixed: list[tuple[bytes, bytes]] | None = None
        self._in_process = InProcessCaller(
            frozenset({protocol.callback_endpoint(callback_url)}), vouched=True
        )
        """In-process calls come from this worker: unsigned, and the function may call back
        here even without a secret of its own."""

    async def start(self) -> None:
        """Open the HTTP connection pool (keep-alive, sized to the concurrency)."""
        if self.signer is None:
            log.warning(
                "no JOBS_SIGNING_SECRET: jobs are dispatched unsigned "
                "(functions that have a secret will refuse them with 401)",
                extra={"action": "start", "insecure": True},
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, limit_per_host=0, keepalive_timeout=60
            )
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=True
            )

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- headers -------------------------------------------------------------------------

    def signature(self, job: Job, job_id: str, attempt: str) -> str | None:
        """The ``X-Job-Signature`` of ``job``'s dispatch (``None`` without a secret)."""
        if self.signer is None:
            return None
        envelope = protocol.Envelope(
            protocol.PURPOSE_DISPATCH,
            self.worker_id,
            job_id,
            attempt,
            job.database_id or "",
            self.callback_url,
            "",
            job.payload,
        )
        return self.signer.sign(envelope, int(time.time()), every_secret=True)

    def header_pairs(self, job: Job) -> list[tuple[str, str]]:
        """The dispatch headers of contract section 2 for ``job``."""
        job_id = str(job.id)
        attempt = str(job.attempts)
        pairs = [
            ("Content-Type", "application/json"),
            ("X-Worker-Id", self.worker_id),
            ("X-Job-Id", job_id),
        ]
        if job.database_id is not None:
            pairs.append(("X-Database-Id", job.database_id))
        pairs.append(("X-Callback-Url", self.callback_url))
        if job.actor_id is not None:
            pairs.append(("X-Actor-Id", job.actor_id))
        pairs += [
            ("X-Task-Identifier", job.task),
            ("X-Job-Attempt", attempt),
            ("X-Job-Max-Attempts", str(job.max_attempts)),
            ("X-Job-Completion", protocol.COMPLETION_REPLY),
            ("traceparent", traceparent()),
        ]
        signature = self.signature(job, job_id, attempt)
        if signature is not None:
            pairs.append(("X-Job-Signature", signature))
        return pairs

    def asgi_headers(self, job: Job) -> list[tuple[bytes, bytes]]:
        """:meth:`header_pairs` as ASGI headers (lower-case byte names), built directly,
        without the signature (an in-process call does not cross a network)."""
        fixed = self._asgi_fixed
        if fixed is None:
            fixed = self._asgi_fixed = [
                (b"content-type", b"application/json"),
                (b"x-worker-id", self.worker_id.encode()),
                (b"x-callback-url", self.callback_url.encode()),
                (b"x-job-completion", protocol.COMPLETION_REPLY.encode()),
            ]
        headers = [
            *fixed,
            (b"x-job-id", str(job.id).encode()),
            (b"x-task-identifier", job.task.encode()),
            (b"x-job-attempt", str(job.attempts).encode()),
            (b"x-job-max-attempts", str(job.max_attempts).encode()),
            (b"traceparent", traceparent().encode()),
            (b"content-length", str(len(job.payload)).encode()),
        ]
        if job.database_id is not None:
            headers.append((b"x-database-id", job.database_id.encode()))
        if job.actor_id is not None:
            headers.append((b"x-actor-id", job.actor_id.encode()))
        # No X-Job-Signature: the call does not leave the process (jobfn.asgi.InProcessCaller).
        return headers

    # -- HTTP ----------------------------------------------------------------------------

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = URL(url)
        return parsed

    def _timeout(self, task: str) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(task)
        if timeout is None:
            timeout = self._timeouts[task] = aiohttp.ClientTimeout(total=self.timeout_for(task))
        return timeout

    async def http(self, job: Job, url: str) -> Outcome:
        """POST ``job`` to ``url`` and read the reply."""
        session = self._session
        if session is None:
            raise RuntimeError("Dispatcher.start() was not called")
        try:
            async with session.post(
                self._url(url),
                data=job.payload,
                headers=self.header_pairs(job),
                timeout=self._timeout(job.task),
                allow_redirects=False,
            ) as response:
                body = await read_capped(response, self.max_reply_bytes)
                if body is None:
                    response.close()  # the rest is not read: the connection is not reused
                    return outcome.too_large(url, self.max_reply_bytes)
                return outcome.interpret(response.status, response.headers, body)
        except TimeoutError:
            return outcome.timed_out(url, self.timeout_for(job.task))
        except aiohttp.ClientConnectorError as exc:  # refused, DNS: the request was not sent
            return outcome.connection_error(url, exc, unreachable=True)
        except (aiohttp.ClientError, OSError) as exc:
            return outcome.connection_error(url, exc)

    # -- in-process ----------------------------------------------------------------------

    async def asgi(self, job: Job, target: str, app: Asgi, done: Done) -> None:
        """Call ``app`` with ``job``; ``done`` gets the outcome exactly once, when known."""
        headers = self.asgi_headers(job)
        call = _AsgiCall(job.payload, done, self.max_reply_bytes, target)
        scope: Message = post_scope(headers)
        seconds = self.timeout_for(job.task)
        task = asyncio.current_task()
        assert task is not None
        timer = asyncio.get_running_loop().call_later(seconds, call.expire, task)
        call.timer = timer
        caller = in_process_caller.set(self._in_process)
        try:
            await app(scope, call.receive, call.send)
        except asyncio.CancelledError:
            if not call.timed_out:
                raise
            task.uncancel()
            call.report(outcome.failure(f"timed out after {seconds:g} s in {target}"))
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            call.report(outcome.failure(f"in-process function {target} raised {detail}"))
        finally:
            timer.cancel()
            in_process_caller.reset(caller)
        call.report(outcome.failure(f"in-process function {target} returned without a reply"))


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

    def report(self, result: Outcome) -> None:
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
                    self.report(outcome.too_large(f"in-process function {self.target}", self.limit))
                    return
                self.chunks.append(bytes(chunk))
            if not message.get("more_body", False):
                body = b"".join(self.chunks)
                self.report(outcome.interpret(self.status, self.headers, body))


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
