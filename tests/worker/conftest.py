"""Fixtures of the job-service tests: a real function server, the service, database helpers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from aiohttp import web

from jobservice.config import Settings, load_settings
from jobservice.service import Service
from jobservice.transport import Asgi

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef0123456789"
"""The job service's secret in these tests (the service refuses to start without one)."""


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a small real function server --------------------------------------------------------


@dataclass
class Delivery:
    """One request the function server received."""

    task: str
    headers: dict[str, str]
    body: bytes

    @property
    def job_id(self) -> int:
        return int(self.headers["x-job-id"])


Handler = Callable[[Delivery], Awaitable[web.StreamResponse]]


@dataclass
class FunctionServer:
    """An HTTP server on 127.0.0.1 whose path ``/<task>`` runs ``handlers[task]``."""

    url: str = ""
    handlers: dict[str, Handler] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def reply(
        self,
        task: str,
        status: int = 200,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``task`` with a fixed reply (``body`` JSON-encoded unless bytes)."""
        raw = (
            body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        )

        async def handler(delivery: Delivery) -> web.StreamResponse:
            return web.Response(status=status, body=raw, headers=headers or {})

        self.handlers[task] = handler

    async def handle(self, request: web.Request) -> web.StreamResponse:
        task = request.match_info["task"]
        delivery = Delivery(
            task, {k.lower(): v for k, v in request.headers.items()}, await request.read()
        )
        self.deliveries.append(delivery)
        self.arrived.set()
        handler = self.handlers.get(task)
        if handler is None:
            return web.json_response({"complete": True})
        return await handler(delivery)

    def of(self, task: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.task == task]


@pytest.fixture
async def fn_server() -> AsyncIterator[FunctionServer]:
    """A real function server on 127.0.0.1; ``url`` is its base URL."""
    server = FunctionServer()
    app = web.Application()
    app.router.add_post("/{task}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    server.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


# -- settings and the service -----------------------------------------------------------


def worker_env(conninfo: str, gateway: str, **extra: str) -> dict[str, str]:
    """Environment of a test service: fast intervals, 127.0.0.1 everywhere."""
    port = free_port()
    env = {
        "DATABASE_URL": conninfo,
        "HOSTNAME": "test-worker-1",
        "INTERNAL_GATEWAY_URL": gateway,
        "INTERNAL_JOBS_CALLBACK_PORT": str(port),
        "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{port}/callback",
        "JOBS_CALLBACK_BIND": "127.0.0.1",
        "JOBS_POLL_INTERVAL": "0.2",
        "JOBS_HEARTBEAT_INTERVAL": "0.5",
        "JOBS_DEAD_WORKER_AFTER": "2",
        "JOBS_SCHEDULER_ENABLED": "false",
        "JOBS_SHUTDOWN_GRACE": "10",
        "JOBS_SIGNING_SECRET": SIGNING_SECRET,
    }
    env.update(extra)
    return env


@asynccontextmanager
async def running_service(
    settings: Settings, apps: dict[str, tuple[str, Asgi]] | None = None
) -> AsyncIterator[Service]:
    """The service running in this event loop until the block ends."""
    service = Service(settings, apps=apps, announce=lambda line: None)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    started = asyncio.create_task(service.started.wait())
    await asyncio.wait({task, started}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    assert service.started.is_set(), "service did not start"
    if service.worker is not None:
        await asyncio.wait_for(service.worker.ready.wait(), 30)
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


# -- database helpers -------------------------------------------------------------------


class JobsDb:
    """The test database: enqueue jobs, read their rows, wait for their state."""

    DB_ID = DB_ID

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)

    async def add(
        self,
        task: str,
        payload: object = None,
        *,
        max_attempts: int = 25,
        queue_name: str | None = None,
    ) -> int:
        """``app_jobs.add_job`` → the new job's id."""
        body = json.dumps(payload if payload is not None else {})
        async with await self.connect() as conn:
            cur = await conn.execute(
                "SELECT id FROM app_jobs.add_job(%s::uuid, %s, %s::json, NULL, %s, now(), %s)",
                (DB_ID, task, body, queue_name, max_attempts),
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    async def add_many(self, task: str, count: int) -> list[int]:
        """``count`` jobs of ``task`` with payload ``{"n": i}`` in one statement."""
        async with await self.connect() as conn:
            cur = await conn.execute(
                "INSERT INTO app_jobs.jobs (database_id, task_identifier, payload)"
                " SELECT %s::uuid, %s, json_build_object('n', i) FROM generate_series(1, %s) i"
                " RETURNING id",
                (DB_ID, task, count),
            )
            return [int(r[0]) for r in await cur.fetchall()]

    async def scalar(self, query: Any, params: Any = None) -> Any:
        async with await self.connect() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
            return None if row is None else row[0]

    async def job(self, job_id: int) -> dict[str, Any] | None:
        """The job's ``jobs`` row, or None."""
        async with await self.connect() as conn:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cur.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", (job_id,))
            return await cur.fetchone()

    async def history(self, job_id: int) -> dict[str, Any] | None:
        """The job's ``job_history`` row, or None."""
        async with await self.connect() as conn:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cur.execute("SELECT * FROM app_jobs.job_history WHERE job_id = %s", (job_id,))
            return await cur.fetchone()

    async def finished(self, job_id: int, *, within: float = 20.0) -> dict[str, Any]:
        """Wait until the job is in history; return its history row."""
        row: dict[str, Any] = await eventually(
            lambda: self.history(job_id), within=within, what=f"job {job_id} to finish"
        )
        return row

    async def retried(self, job_id: int, *, within: float = 20.0) -> dict[str, Any]:
        """Wait until the job failed an attempt (unlocked, with an error); return its row."""

        async def check() -> dict[str, Any] | None:
            row = await self.job(job_id)
            if row is not None and row["last_error"] is not None and row["locked_by"] is None:
                return row
            return None

        row: dict[str, Any] = await eventually(check, within=within, what=f"{job_id} retry")
        return row

    async def count(self, query: Any, params: Any = None) -> int:
        return int(await self.scalar(query, params))


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 20.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.02)


@pytest.fixture
def jobs_db(db_conninfo: str) -> JobsDb:
    """Helpers over this test's database."""
    return JobsDb(db_conninfo)


class Tools:
    """What tests need besides fixtures: settings, the running service, waiting, ports."""

    free_port = staticmethod(free_port)
    eventually = staticmethod(eventually)
    running_service = staticmethod(running_service)

    def __init__(self, conninfo: str, gateway: str) -> None:
        self.conninfo = conninfo
        self.gateway = gateway

    def env(self, **extra: str) -> dict[str, str]:
        return worker_env(self.conninfo, self.gateway, **extra)

    def settings(self, **extra: str) -> Settings:
        return load_settings(self.env(**extra))


@pytest.fixture
def tools(db_conninfo: str, fn_server: FunctionServer) -> Tools:
    """Settings pointing at this test's database and function server, and helpers."""
    return Tools(db_conninfo, fn_server.url)
