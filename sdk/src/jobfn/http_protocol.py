"""The HTTP protocol ``jobfn serve`` gives uvicorn: its ``httptools`` protocol, each reply
written in one piece.

uvicorn writes a reply's head as soon as the app sends ``http.response.start`` and its body
when the app sends ``http.response.body``: two writes, two system calls and often two TCP
segments for the worker to read, for every job. A job's reply body follows its head at once,
so here the head is held until the first body bytes (or the connection closing) and both go
out in one write. Nothing else changes: an interim ``100 Continue`` passes straight through,
a streamed body is written as it comes, and everything else is uvicorn's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_CONTINUE = b"HTTP/1.1 100 "


class OneWriteReplies(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol whose replies go out head and body in one write."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        transport: object = cycle.transport if cycle is not None else None
        if cycle is not None and not isinstance(transport, HeadHeld):
            cycle.transport = HeadHeld(cycle.transport)  # type: ignore[assignment]


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
