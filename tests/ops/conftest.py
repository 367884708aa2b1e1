"""Fixtures of the operations tests: the real ``jobs`` command (``jobs_cli``), a real ``jobs
worker`` process serving the HTTP API and dashboard (``server``, ``token_server``), and SQL
helpers that play a worker: claim, report progress, fail, complete (``sql``).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
WORKER = "ops-test-worker"
JOBS = str(Path(sys.executable).parent / "jobs")
SECRET = secrets.token_hex(32)


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_jobs(
    *args: str, conninfo: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``jobs ARGS`` through the console script, against ``conninfo``, output piped."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "JOBS_"))}
    environ.update({"DATABASE_URL": conninfo, "JOBS_DATABASE_ID": DB_ID})
    environ.pop("NO_COLOR", None)
    environ.update(env or {})
    return subprocess.run(
        [JOBS, *args],
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Sql:
    """The test database, playing the part of a worker where a test needs one."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def rows(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def add(self, task: str, payload: str = "{}", **extra: Any) -> int:
        [(job_id,)] = self.rows(
            "SELECT id FROM app_jobs.add_job(db_id := %s::uuid, identifier := %s,"
            " payload := %s::json, run_at := coalesce(%s::timestamptz, now()))",
            (DB_ID, task, payload, extra.get("run_at")),
        )
        return int(job_id)

    def claim(self) -> list[int]:
        rows = self.rows("SELECT id FROM app_jobs.claim_jobs(%s, NULL, '4 hours', 100)", [WORKER])
        return [int(r[0]) for r in rows]

    def progress(self, job_id: int, pct: int, text: str) -> None:
        self.rows("SELECT app_jobs.report_progress(%s, %s, %s, %s)", (WORKER, job_id, pct, text))

    def fail(self, job_id: int, message: str, *, retry: bool = False) -> None:
        self.rows(
            "SELECT * FROM app_jobs.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[%s])",
            (WORKER, job_id, message, retry),
        )

    def complete(self, job_id: int, result: str = '{"ok": true}') -> None:
        self.rows(
            "SELECT app_jobs.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s::json])",
            (WORKER, job_id, result),
        )

    def status(self, job_id: int) -> str | None:
        rows = self.rows("SELECT status FROM app_jobs.job_states WHERE id = %s", [job_id])
        return str(rows[0][0]) if rows else None


@dataclass
class Server:
    """A running ``jobs worker`` (API, dashboard) and how to reach it."""

    url: str
    token: str | None
    process: subprocess.Popen[str]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def service_env(conninfo: str, port: int, **extra: str) -> dict[str, str]:
    """Environment of a test ``jobs worker``: API only (no worker, no scheduler), loopback."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "JOBS_"))}
    environ.update(
        {
            "DATABASE_URL": conninfo,
            "JOBS_DATABASE_ID": DB_ID,
            "HOSTNAME": "ops-test-service",
            "INTERNAL_JOBS_CALLBACK_PORT": str(port),
            "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{port}/callback",
            "JOBS_CALLBACK_BIND": "127.0.0.1",
            "INTERNAL_GATEWAY_URL": "http://127.0.0.1:9",
            "JOBS_WORKER_ENABLED": "false",
            "JOBS_SCHEDULER_ENABLED": "false",
            "JOBS_SIGNING_SECRET": SECRET,
            "JOBS_SHUTDOWN_GRACE": "5",
        }
    )
    environ.update(extra)
    return environ


def wait_ready(url: str, process: subprocess.Popen[str], within: float = 30.0) -> None:
    """Wait until ``url``/health/readiness answers 200 (or the process exits)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jobs worker exited: {process.communicate()[1]}")
        try:
            with urllib.request.urlopen(f"{url}/health/readiness", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"jobs worker not ready at {url} within {within} s")


def start_service(conninfo: str, **extra: str) -> Server:
    """Start ``jobs worker`` and wait for it to be ready."""
    port = free_port()
    env = service_env(conninfo, port, **extra)
    process = subprocess.Popen(
        [JOBS, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
    except BaseException:
        process.kill()
        process.communicate(timeout=10)
        raise
    token_file = env.get("JOBS_API_TOKEN_FILE")
    token = Path(token_file).read_text().strip() if token_file else env.get("JOBS_API_TOKEN")
    return Server(url, token, process)


def stop_service(server: Server) -> None:
    """SIGTERM and wait (bounded)."""
    server.process.terminate()
    try:
        server.process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.communicate(timeout=10)


TOKEN = "ops-test-token-0123456789abcdefghijk"


@pytest.fixture
def jobs_cli(db_conninfo: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``jobs_cli(*args, env=..., stdin=...)``: the console script against this test's database."""

    def run(
        *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_jobs(*args, conninfo=db_conninfo, env=env, stdin=stdin)

    return run


@pytest.fixture
def sql(db_conninfo: str) -> Sql:
    """SQL helpers over this test's database."""
    return Sql(db_conninfo)


@pytest.fixture
def server(db_conninfo: str) -> Iterator[Server]:
    """``jobs worker`` on loopback without a token (the API is open to loopback only)."""
    running = start_service(db_conninfo)
    try:
        yield running
    finally:
        stop_service(running)


@pytest.fixture
def token_server(db_conninfo: str) -> Iterator[Server]:
    """``jobs worker`` listening on every interface, so ``JOBS_API_TOKEN`` is required."""
    running = start_service(db_conninfo, JOBS_CALLBACK_BIND="0.0.0.0", JOBS_API_TOKEN=TOKEN)
    try:
        yield running
    finally:
        stop_service(running)


@pytest.fixture
def start(db_conninfo: str) -> Iterator[Callable[..., Server]]:
    """``start(**env)``: a ``jobs worker`` with extra environment, stopped after the test."""
    started: list[Server] = []

    def go(**extra: str) -> Server:
        running = start_service(db_conninfo, **extra)
        started.append(running)
        return running

    yield go
    for running in started:
        stop_service(running)
