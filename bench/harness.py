"""The benchmark's plumbing: a database of its own, the worker and function processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devstack.database import (
    configured_conninfo,
    create_database,
    drop_database,
    start_embedded,
)
from jobservice.migrate import migrate
from jobservice.queries import parse

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@contextmanager
def fresh_database() -> Iterator[tuple[str, str]]:
    """A new database with the schema, dropped afterwards: ``(conninfo, where it runs)``."""
    admin = configured_conninfo()
    server = None
    where = "configured PostgreSQL (DATABASE_URL / PG*)"
    if admin is None:
        server = start_embedded(ROOT / ".cache" / "bench-pg")
        admin = server.conninfo
        where = "embedded PostgreSQL (.cache/bench-pg)"
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conninfo = create_database(admin, name)
    try:
        migrate(conninfo)
        yield conninfo, where
    finally:
        drop_database(admin, name)
        if server is not None:
            server.stop()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http_ok(url: str, process: subprocess.Popen[bytes], within: float = 30.0) -> None:
    """Wait until ``url`` answers 2xx; fail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                if 200 <= reply.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {within} s")


@dataclass
class Process:
    """A started process; :meth:`peak_memory_mb` reads its VmHWM."""

    popen: subprocess.Popen[bytes]

    def peak_memory_mb(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextmanager
def started(argv: list[str], env: Mapping[str, str], ready_url: str) -> Iterator[Process]:
    """Run ``argv`` with ``env`` added, wait for ``ready_url``, stop it at the end."""
    popen = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process = Process(popen)
    try:
        wait_http_ok(ready_url, popen)
        yield process
    finally:
        process.stop()


@contextmanager
def worker(
    conninfo: str,
    *,
    concurrency: int,
    inprocess: Mapping[str, str] | None = None,
    routes: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Iterator[Process]:
    """A ``jobs worker`` process (worker and callback server, no scheduler)."""
    port = free_port()
    env = {
        "DATABASE_URL": conninfo,
        "HOSTNAME": f"bench-{uuid.uuid4().hex[:8]}",
        "JOBS_CONCURRENCY": str(concurrency),
        "JOBS_SCHEDULER_ENABLED": "false",
        "JOBS_LOG_LEVEL": "WARNING",
        "INTERNAL_JOBS_CALLBACK_PORT": str(port),
        "JOBS_CALLBACK_BIND": "127.0.0.1",
        "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{port}/callback",
        "JOBS_INPROCESS": json.dumps(dict(inprocess or {})),
        "INTERNAL_GATEWAY_DEVELOPMENT_MAP": json.dumps(dict(routes or {})),
        **(extra or {}),
    }
    with started(
        [str(BIN / "jobs"), "worker"], env, f"http://127.0.0.1:{port}/health/readiness"
    ) as process:
        yield process


@contextmanager
def function_server(module: str) -> Iterator[str]:
    """``jobfn serve MODULE`` on a free port; yields its URL."""
    port = free_port()
    with started(
        [str(BIN / "jobfn"), "serve", module],
        {"PORT": str(port)},
        f"http://127.0.0.1:{port}/health/readiness",
    ):
        yield f"http://127.0.0.1:{port}/"


QUERIES = parse((Path(__file__).parent / "queries.sql").read_text(encoding="utf-8"))


def execute(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Run query ``name`` for its effect."""
    conn.execute(QUERIES[name])


def scalar(conn: psycopg.Connection[tuple[object, ...]], name: str) -> object:
    """The single value query ``name`` returns."""
    row = conn.execute(QUERIES[name]).fetchone()
    return None if row is None else row[0]
