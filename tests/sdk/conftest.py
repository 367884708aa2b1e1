"""Fixtures of the SDK tests: real uvicorn servers on 127.0.0.1 and a recording callback server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

WAIT = 20.0
"""Upper bound of every wait for something to arrive."""


def bound_socket() -> socket.socket:
    """A listening-ready TCP socket on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """An app served by uvicorn in this event loop."""

    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        """Shut the server down gracefully (as on SIGTERM) and wait until it is done."""
        self.server.should_exit = True
        await asyncio.wait_for(asyncio.shield(self.task), WAIT)


@asynccontextmanager
async def running(app: Any, *, lifespan: Literal["on", "off"] = "on") -> AsyncIterator[Served]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 in this event loop."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,
        access_log=False,
        interface="asgi3",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT):
            while not server.started:  # uvicorn offers no event for this
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        served = Served(f"http://127.0.0.1:{port}", server, task)
        yield served
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


Serve = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def serve_app() -> Serve:
    """``async with serve_app(app) as served:`` runs ``app`` on a real uvicorn (see running)."""
    return running


@dataclass
class Received:
    """One request the callback server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CallbackServer:
    """A callback server on 127.0.0.1 that records every request.

    It answers the first ``fail_first`` requests with ``fail_status``, then like the reference
    callback server: ``200 {"workerId": ..., "jobId": ...}``.
    """

    url: str = ""
    fail_first: int = 0
    fail_status: int = 503
    received: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: Request) -> Response:
        self.received.append(
            Received(
                request.method,
                request.url.path,
                {k.lower(): v for k, v in request.headers.items()},
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                await request.body(),
            )
        )
        async with self.changed:
            self.changed.notify_all()
        if len(self.received) <= self.fail_first:
            return JSONResponse({"error": "not yet"}, status_code=self.fail_status)
        return JSONResponse(
            {
                "workerId": request.headers.get("x-worker-id"),
                "jobId": request.headers.get("x-job-id"),
            }
        )

    async def wait_for(
        self, count: int, predicate: Callable[[list[Received]], bool] | None = None
    ) -> list[Received]:
        """Wait (bounded) until ``count`` requests arrived (and ``predicate`` holds)."""
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(
                lambda: (
                    len(self.received) >= count and (predicate is None or predicate(self.received))
                )
            )
        return list(self.received)

    def callbacks(self, status: str) -> list[Received]:
        """Received callbacks whose body has this ``status``."""
        return [r for r in self.received if r.json.get("status") == status]


@pytest.fixture
async def callback_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CallbackServer]:
    """A recording callback server (reference-like answers) on a free port.

    It is the one callback URL that functions without a secret may call back
    (``JOBS_CALLBACK_ALLOWED_URLS``), as a deployment would configure it.
    """
    recorder = CallbackServer()
    app = Starlette(routes=[Route("/{path:path}", recorder.handle, methods=["POST"])])
    async with running(app, lifespan="off") as served:
        recorder.url = served.url
        monkeypatch.setenv("JOBS_CALLBACK_ALLOWED_URLS", served.url)
        yield recorder
