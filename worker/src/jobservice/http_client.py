"""A lean HTTP/1.1 client for the worker's dispatches to ``http://`` functions.

One request is: write the request (head and body, made by the caller) on a keep-alive
connection to the origin, parse the reply with ``httptools`` (the C parser uvicorn uses) as it
arrives, and call ``done`` once with a :class:`Reply` or an exception. There is no task and no
coroutine per request: everything happens in the connection's protocol callbacks, which is
what makes it several times cheaper per request than a general-purpose client.

What it guarantees:

- the reply body is read up to ``limit`` bytes, counted after decompression (``gzip``,
  ``deflate``); a larger body, or a declared ``Content-Length`` over the limit, ends the
  request with :class:`ReplyTooLargeError` and closes the connection without reading the rest;
- a request gets a reply or an error within its ``timeout`` (seconds, connecting included):
  :class:`TimeoutError`, and the connection is closed;
- :class:`CannotConnectError` when the connection could not be made (refused, name not
  resolved): the request was not sent; :class:`ServerDisconnectedError` when the connection
  closed before the reply was complete (the request may have been received);
- a connection is reused only after a complete reply that allows it (HTTP/1.1 keep-alive, no
  ``Connection: close``); idle connections are kept at most ``keepalive`` seconds, and at most
  ``max_idle`` per origin.

``https://`` is not handled here (the transport uses aiohttp for it).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from typing import Any, cast

import httptools

MAX_HEADER_VALUE = 8192
"""Longest reply header value kept (longer ones are cut)."""


class Reply:
    """A complete reply: status, headers (lower-case names, the first of repeated ones), body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class CannotConnectError(ConnectionError):
    """The connection to the origin could not be made: the request was not sent."""


class ServerDisconnectedError(ConnectionError):
    """The connection closed (or the reply was malformed) before the reply was complete."""


class ReplyTooLargeError(Exception):
    """The reply body is larger than the limit (after decompression); it was not read."""


Done = Callable[[Reply | BaseException], None]


class HttpClient:
    """Keep-alive connection pools, one per origin (host, port)."""

    def __init__(self, *, max_idle: int = 100, keepalive: float = 60.0) -> None:
        self.max_idle = max_idle
        self.keepalive = keepalive
        self._origins: dict[tuple[str, int], Origin] = {}
        self.closed = False

    def origin(self, host: str, port: int) -> Origin:
        """The pool of ``host:port`` (made on first use)."""
        key = (host, port)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = Origin(self, host, port)
        return origin

    def close(self) -> None:
        """Close every connection; requests in flight end with :class:`ServerDisconnectedError`."""
        self.closed = True
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()


class Origin:
    """The connections to one ``host:port``."""

    def __init__(self, client: HttpClient, host: str, port: int) -> None:
        self.client = client
        self.host = host
        self.port = port
        self.idle: list[_Connection] = []
        self.busy: set[_Connection] = set()

    def request(self, data: bytes, *, limit: int, timeout: float, done: Done) -> None:
        """Send ``data`` (the whole request) and call ``done`` once with the outcome."""
        loop = asyncio.get_running_loop()
        idle = self.idle
        while idle:
            connection = idle.pop()
            if connection.usable(time.monotonic() - self.client.keepalive):
                self.busy.add(connection)
                connection.start(data, limit, loop.call_later(timeout, connection.expire), done)
                return
            connection.close()
        if self.client.closed:
            done(ServerDisconnectedError("the HTTP client is closed"))
            return
        connection = _Connection(self)
        self.busy.add(connection)
        connection.start(data, limit, loop.call_later(timeout, connection.expire), done)
        connection.connecting = loop.create_task(self._connect(connection))

    async def _connect(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: connection, self.host, self.port)
        except asyncio.CancelledError:
            connection.connecting = None
            expired = connection.expired
            connection.fail(TimeoutError() if expired else ServerDisconnectedError("closed"))
            return
        except OSError as exc:
            connection.connecting = None
            error = CannotConnectError(f"cannot connect to {self.host}:{self.port}: {exc}")
            error.__cause__ = exc
            connection.fail(error)
            return
        connection.connecting = None

    def release(self, connection: _Connection) -> None:
        """``connection`` finished a reply and may be reused."""
        self.busy.discard(connection)
        if self.client.closed or len(self.idle) >= self.client.max_idle:
            connection.close()
        else:
            self.idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        """``connection`` is closed."""
        self.busy.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)

    def close(self) -> None:
        """Close every connection of this origin."""
        for connection in [*self.idle, *self.busy]:
            connection.close()
        self.idle.clear()
        self.busy.clear()


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, parsed by ``httptools``."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.connecting: asyncio.Task[None] | None = None
        self.pending: bytes | None = None
        self.done: Done | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.limit = 0
        self.idle_since = 0.0
        self.lost = False
        self.expired = False
        self.keep_alive = False
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.decoder: Any = None
        self.headers_done = False
        self.until_eof = False

    # -- the request ----------------------------------------------------------------------

    def usable(self, idle_after: float) -> bool:
        """Whether this idle connection may carry another request."""
        return not self.lost and self.transport is not None and self.idle_since >= idle_after

    def start(self, data: bytes, limit: int, timer: asyncio.TimerHandle, done: Done) -> None:
        """Send ``data`` now, or once connected."""
        self.done = done
        self.limit = limit
        self.timer = timer
        self._reset()
        if self.transport is None:
            self.pending = data
        else:
            self.transport.write(data)

    def expire(self) -> None:
        """The request's time is up."""
        self.expired = True
        if self.connecting is not None:
            self.connecting.cancel()  # _connect reports the timeout
            return
        self.fail(TimeoutError())

    def fail(self, error: BaseException) -> None:
        """End the request with ``error`` and close the connection."""
        self._finish(error)
        self.close()

    def _finish(self, result: Reply | BaseException) -> None:
        done = self.done
        if done is None:
            return
        self.done = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        done(result)

    def close(self) -> None:
        """Close the connection (a request in flight ends with a disconnection)."""
        if self.transport is not None and not self.lost:
            self.transport.abort()  # connection_lost follows
        elif self.connecting is not None:
            self.connecting.cancel()  # _connect reports it
        elif self.transport is None:
            self.origin.forget(self)

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        data = self.pending
        if data is not None:
            self.pending = None
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.done is None:  # nothing was asked: not a server to keep talking to
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ServerDisconnectedError(f"malformed reply: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.origin.forget(self)
        if self.done is None:
            return
        if self.headers_done and self.until_eof and exc is None:
            self._complete()  # a body delimited by the end of the connection
            return
        reason = f": {exc}" if exc is not None else ""
        self._finish(ServerDisconnectedError(f"server disconnected{reason}"))

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key not in self.headers:
            self.headers[key] = value[:MAX_HEADER_VALUE].decode("utf-8", "surrogateescape")

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()
        self.headers_done = True
        headers = self.headers
        length = headers.get("content-length")
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = _Deflate()
        elif length is not None and length.strip().isdigit() and int(length) > self.limit:
            self.fail(ReplyTooLargeError())
            return
        self.until_eof = length is None and "chunked" not in headers.get("transfer-encoding", "")

    def on_body(self, body: bytes) -> None:
        if self.done is None:
            return
        decoder = self.decoder
        if decoder is not None:
            try:
                # At most one byte past the limit: a bomb never inflates in memory.
                body = decoder.decompress(body, self.limit - self.size + 1)
            except zlib.error as exc:
                self.fail(ServerDisconnectedError(f"cannot decompress the reply: {exc}"))
                return
        self.size += len(body)
        if self.size > self.limit:
            self.fail(ReplyTooLargeError())
            return
        if body:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.done is None:
            return
        self._complete()

    def _complete(self) -> None:
        decoder = self.decoder
        if decoder is not None:
            try:
                rest = decoder.flush()
            except zlib.error as exc:
                self.fail(ServerDisconnectedError(f"cannot decompress the reply: {exc}"))
                return
            self.size += len(rest)
            if self.size > self.limit:
                self.fail(ReplyTooLargeError())
                return
            self.chunks.append(rest)
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        reply = Reply(self.status, self.headers, body)
        if self.lost or self.until_eof or not self.keep_alive:
            self._finish(reply)
            self.close()
            return
        self.idle_since = time.monotonic()
        done = self.done
        self.done = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.origin.release(self)
        assert done is not None
        done(reply)


class _Deflate:
    """``Content-Encoding: deflate``: zlib-wrapped as the standard says, or raw deflate as some
    servers send it (decided by the first bytes)."""

    def __init__(self) -> None:
        self._decoder: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._decoder is None:
            wrapped = (
                len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
            )
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out: bytes = self._decoder.decompress(data, max_length)
        return out

    def flush(self) -> bytes:
        return b"" if self._decoder is None else bytes(self._decoder.flush())
