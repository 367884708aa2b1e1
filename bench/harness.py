"""The benchmark's plumbing: a database of its own, the worker and function processes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
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


SIGNING_SECRET = secrets.token_hex(32)
"""The worker signs each dispatch and the function checks it, as in production."""


@contextmanager
def server() -> Iterator[tuple[str, str]]:
    """The PostgreSQL to measure on: ``(admin conninfo, where it runs)``.

    ``DATABASE_URL`` / ``PG*`` when set, else the embedded one in ``.cache/bench-pg``.
    """
    admin = configured_conninfo()
    if admin is not None:
        yield admin, "configured PostgreSQL (DATABASE_URL / PG*)"
        return
    embedded = start_embedded(ROOT / ".cache" / "bench-pg")
    try:
        yield embedded.conninfo, "embedded PostgreSQL (.cache/bench-pg)"
    finally:
        embedded.stop()


@contextmanager
def database(admin: str, prefix: str = "bench", *, ours: bool = True) -> Iterator[str]:
    """A new database (with the ``app_jobs`` schema when ``ours``), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conninfo = create_database(admin, name)
    try:
        if ours:
            migrate(conninfo)
        yield conninfo
    finally:
        drop_database(admin, name)


@contextmanager
def fresh_database() -> Iterator[tuple[str, str]]:
    """A new database with the schema, dropped afterwards: ``(conninfo, where it runs)``."""
    with server() as (admin, where), database(admin) as conninfo:
        yield conninfo, where


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


@dataclass(frozen=True)
class Launch:
    """How to start one process and when it is ready.

    Ready means: ``ready_url`` answers 2xx, or (without a URL) the process prints a line
    containing ``BENCH_READY`` on its standard output.
    """

    argv: list[str]
    env: Mapping[str, str]
    ready_url: str | None = None
    cwd: Path | None = None

    def spawn(self) -> Process:
        """Start the process (``env`` added to this one's environment)."""
        popen = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if self.ready_url else subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        return Process(popen)

    def wait_ready(self, process: Process) -> None:
        """Return once ``process`` is ready; raise if it exits or takes too long."""
        if self.ready_url is not None:
            wait_http_ok(self.ready_url, process.popen)
        else:
            wait_ready_line(process.popen)


@contextmanager
def started_all(launches: Sequence[Launch]) -> Iterator[list[Process]]:
    """Start every process at once, wait until all are ready, stop them all at the end."""
    spawned: list[Process] = []
    try:
        for launch in launches:
            spawned.append(launch.spawn())
        for launch, process in zip(launches, spawned, strict=True):
            launch.wait_ready(process)
        yield spawned
    finally:
        for process in spawned:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in spawned:
            process.stop()


@contextmanager
def started(
    argv: list[str],
    env: Mapping[str, str],
    ready_url: str | None = None,
    *,
    cwd: Path | None = None,
) -> Iterator[Process]:
    """Run ``argv`` with ``env`` added, wait until it is ready, stop it at the end."""
    with started_all([Launch(argv, env, ready_url, cwd)]) as (process,):
        yield process


def wait_ready_line(process: subprocess.Popen[bytes], within: float = 60.0) -> None:
    """Wait for a ``BENCH_READY`` line on ``process``'s stdout, then discard the rest."""
    stdout = process.stdout
    assert stdout is not None
    found = threading.Event()

    def read() -> None:
        for line in stdout:
            if b"BENCH_READY" in line:
                found.set()
        found.set()  # end of output: the process exited

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(within) or process.poll() is not None:
        raise RuntimeError(f"{process.args!r} did not get ready (exit code {process.poll()})")


def worker_launch(
    conninfo: str,
    *,
    concurrency: int,
    inprocess: Mapping[str, str] | None = None,
    routes: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Launch:
    """A ``jobs worker`` process (worker and callback server, no scheduler) to start."""
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
        "JOBS_SIGNING_SECRET": SIGNING_SECRET,
        **(extra or {}),
    }
    return Launch([str(BIN / "jobs"), "worker"], env, f"http://127.0.0.1:{port}/health/readiness")


@contextmanager
def worker(
    conninfo: str,
    *,
    concurrency: int,
    inprocess: Mapping[str, str] | None = None,
    routes: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Iterator[Process]:
    """A running ``jobs worker`` process (see :func:`worker_launch`)."""
    launch = worker_launch(
        conninfo, concurrency=concurrency, inprocess=inprocess, routes=routes, extra=extra
    )
    with started_all([launch]) as (process,):
        yield process


@contextmanager
def function_process(
    module: str, extra: Mapping[str, str] | None = None
) -> Iterator[tuple[str, Process]]:
    """``jobfn serve MODULE`` on a free port; yields its URL and its process."""
    port = free_port()
    with started(
        [str(BIN / "jobfn"), "serve", module],
        {"PORT": str(port), "JOBS_SIGNING_SECRET": SIGNING_SECRET, **(extra or {})},
        f"http://127.0.0.1:{port}/health/readiness",
    ) as process:
        yield f"http://127.0.0.1:{port}/", process


@contextmanager
def function_server(module: str, extra: Mapping[str, str] | None = None) -> Iterator[str]:
    """``jobfn serve MODULE`` on a free port; yields its URL."""
    with function_process(module, extra) as (url, _process):
        yield url


QUERIES = parse((Path(__file__).parent / "queries.sql").read_text(encoding="utf-8"))


def execute(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Run query ``name`` for its effect."""
    conn.execute(QUERIES[name])


def scalar(conn: psycopg.Connection[tuple[object, ...]], name: str) -> object:
    """The single value query ``name`` returns."""
    row = conn.execute(QUERIES[name]).fetchone()
    return None if row is None else row[0]
