"""The HTTP protocol ``jobfn serve`` gives uvicorn: its ``httptools`` protocol, with a lean
path for job requests and each reply written in one piece.

A job request (``POST``, HTTP/1.1, a ``Content-Length`` within the function's body limit, no
``Expect``, no upgrade, nothing pipelined before it) is run by :class:`JobExchange`: the body is
collected as it arrives, :meth:`jobfn.job_app.JobApp.handle_job` runs in one task once it is
complete, and the reply goes out head and body in one write. Everything uvicorn does around a
request stays its own (keep-alive and its timeout, flow control, pipelining, graceful
shutdown, the 500 on an exception): the exchange looks to it like its own request cycle.

Every other request goes through uvicorn's request cycle, whose transport holds the reply's
head until the first body bytes (:class:`HeadHeld`), so that those replies too leave in one
write (uvicorn writes the head and the body separately: two system calls, often two TCP
segments for the client to read). An interim ``100 Continue`` passes straight through.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)

from jobfn.job_app import JobApp

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

_CONTINUE = b"HTTP/1.1 100 "
Message = MutableMapping[str, Any]


class JobHttpProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol with :class:`JobExchange` for job requests and one
    write per reply."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        app = self.app
        lean = (
            isinstance(app, JobApp)
            and not self.access_log
            and self.limit_concurrency is None
            and not config.reset_contextvars
        )
        self.job_app: JobApp | None = app if lean else None
        self.max_body = app.fn.max_body_size if isinstance(app, JobApp) else 0
        self.idle_since: float | None = None
        """When the connection last went idle (``None``: a request is in progress)."""

    # -- keep-alive: one timer per idle period, not one per request ------------------------

    def _unset_keepalive_if_required(self) -> None:
        self.idle_since = None  # busy: the timer, if it fires, finds nothing to close

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self.idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._keep_alive_check
            )

    def _keep_alive_check(self) -> None:
        """Close the connection once it has been idle for the keep-alive timeout."""
        self.timeout_keep_alive_task = None
        since = self.idle_since
        if since is None:
            return  # busy: armed again when it next goes idle
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_check)
        else:
            self.timeout_keep_alive_handler()

    def on_headers_complete(self) -> None:
        parser = self.parser
        cycle: object = self.cycle
        if (
            self.job_app is not None
            and parser.get_method() == b"POST"
            and not self.expect_100_continue
            and parser.get_http_version() == "1.1"
            and not parser.should_upgrade()
            and (cycle is None or getattr(cycle, "response_complete", False))
            and self._within_limit()
        ):
            self._fill_scope()
            self.cycle = JobExchange(self, parser.should_keep_alive())  # type: ignore[assignment]
            return
        super().on_headers_complete()
        transport: object = self.cycle.transport if self.cycle is not None else None
        if self.cycle is not None and not isinstance(transport, HeadHeld):
            self.cycle.transport = HeadHeld(self.cycle.transport)  # type: ignore[assignment]

    def _within_limit(self) -> bool:
        """A declared length within the function's limit, no other framing."""
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return False
                length = int(value)
            elif name == b"transfer-encoding":
                return False
        return length is not None and length <= self.max_body

    def _fill_scope(self) -> None:
        """What uvicorn's own cycle would have put in the request's scope."""
        scope = self.scope
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["method"] = "POST"
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed.query or b""

    def on_body(self, body: bytes) -> None:
        cycle: object = self.cycle
        if type(cycle) is JobExchange:
            cycle.chunks.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle: object = self.cycle
        if type(cycle) is JobExchange:
            cycle.start()
            return
        super().on_message_complete()


class JobExchange:
    """One job request on a :class:`JobHttpProtocol` connection: its body, its reply.

    It has what uvicorn's protocol reads and sets on a request cycle (``response_complete``,
    ``disconnected``, ``keep_alive``, ``more_body``, ``message_event.set()``), and serves the
    ASGI ``receive``/``send`` of :meth:`JobApp.handle_job`.
    """

    __slots__ = (
        "_head",
        "_left",
        "_received",
        "_waiter",
        "chunks",
        "disconnected",
        "keep_alive",
        "more_body",
        "protocol",
        "response_complete",
        "response_started",
        "scope",
        "transport",
    )

    def __init__(self, protocol: JobHttpProtocol, keep_alive: bool) -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        self.scope: Any = protocol.scope
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []
        self.response_started = False
        self.response_complete = False
        self.disconnected = False
        self.more_body = True
        self._received = False
        self._head: bytes | None = None
        self._left: int | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def message_event(self) -> JobExchange:
        """uvicorn calls ``cycle.message_event.set()`` when the connection is lost."""
        return self

    def set(self) -> None:
        """Wake a ``receive`` waiting for the end of the exchange."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def start(self) -> None:
        """The body is complete: run the job in a task uvicorn waits for on shutdown."""
        self.more_body = False
        protocol = self.protocol
        app = protocol.job_app
        assert app is not None
        task = protocol.loop.create_task(self.run(app))
        protocol.tasks.add(task)
        task.add_done_callback(protocol.tasks.discard)

    async def run(self, app: JobApp) -> None:
        """``app.handle_job``, with uvicorn's answers to an app that fails or does not reply."""
        logger = self.protocol.logger
        try:
            await app.handle_job(self.scope, self.receive, self.send)
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self.send_500()
            else:
                self.transport.close()
        else:
            if not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                await self.send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self.transport.close()

    async def send_500(self) -> None:
        """Answer 500 and close."""
        await self.send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"21"),
                    (b"connection", b"close"),
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})

    async def receive(self) -> Message:
        """The whole body at once; then ``http.disconnect`` once the exchange is over."""
        if not self._received:
            self._received = True
            chunks = self.chunks
            self.chunks = []
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            return {"type": "http.request", "body": body, "more_body": False}
        if not self.disconnected and not self.response_complete:
            self._waiter = self.protocol.loop.create_future()
            await self._waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """ASGI ``send``: the head is kept until the body, then both go out in one write."""
        protocol = self.protocol
        if protocol.flow.write_paused and not self.disconnected:
            await protocol.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got {kind!r}."
                )
            self.response_started = True
            self._head = self._reply_head(message)
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {kind!r}.")
            body: bytes = message.get("body", b"")
            left = self._left
            if left is not None:
                left -= len(body)
                if left < 0:
                    raise RuntimeError("Response content longer than Content-Length")
                self._left = left
            head = self._head
            if head is not None:
                self._head = None
                body = head + body
            if body:
                self.transport.write(body)
            if not message.get("more_body", False):
                if left not in (None, 0):
                    raise RuntimeError("Response content shorter than Content-Length")
                self.response_complete = True
                self.set()
                if not self.keep_alive:
                    self.transport.close()
                protocol.on_response_complete()
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after the response completed.")

    def _reply_head(self, message: Message) -> bytes:
        """Status line and headers (uvicorn's defaults first); a reply without a
        ``Content-Length`` is delimited by closing the connection."""
        content = [STATUS_LINE[message["status"]]]
        for name, value in self.protocol.server_state.default_headers:
            content += [name, b": ", value, b"\r\n"]
        closing = False
        for raw_name, value in message.get("headers", ()):
            if HEADER_RE.search(raw_name) or HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header name or value.")
            name = raw_name.lower()
            if name == b"content-length":
                self._left = int(value)
            elif name == b"transfer-encoding":
                continue  # the body is sent as it is, delimited by its length or the close
            elif name == b"connection" and b"close" in [
                token.strip() for token in value.lower().split(b",")
            ]:
                self.keep_alive = False
                closing = True
            content += [name, b": ", value, b"\r\n"]
        if self._left is None:
            self.keep_alive = False
        if not self.keep_alive and not closing:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        return b"".join(content)


class HeadHeld:
    """A transport for one request's reply: the first write (the reply's head) is held and
    sent together with the next one; closing sends what is held first."""

    __slots__ = ("_first", "_held", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold the head; send it with the next bytes."""
        if self._first and bytes(data[:13]) != _CONTINUE:
            self._first = False
            self._held = bytes(data)
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + data
        self._transport.write(data)

    def flush(self) -> None:
        """Send what is held."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        """Send what is held, then close."""
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether the connection is closing."""
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
