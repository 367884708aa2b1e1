"""Fixtures of the security tests: the real processes an attacker on 127.0.0.1 would reach.

- :func:`job_service`: ``jobs worker`` as a process of its own (its callback port, its RSS);
- :func:`function_process`: a ``jobfn serve`` function as a process of its own;
- :class:`Recorder`: a plain HTTP server on 127.0.0.1 (a thread) that records what reaches it
  and answers with what a test scripts (a function that streams a huge body, a gzip bomb...).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from jobfn import protocol

BIN = Path(sys.executable).parent
SECRET = "security-test-secret-0123456789abcdef01234567"
OLD_SECRET = "security-old-secret-0123456789abcdef012345678"
DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
OTHER_DB_ID = "00000000-0000-4000-8000-00000000beef"
WAIT = 60.0


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env() -> dict[str, str]:
    drop = ("PG", "JOBS_", "INTERNAL_", "DATABASE_URL", "KNATIVE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(check: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Poll ``check`` (bounded) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.02)


# -- a scriptable HTTP server -----------------------------------------------------------------

Reply = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Received:
    """One request the recorder received."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 recording requests; ``replies[path]`` scripts an answer."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    replies: dict[str, Reply] = field(default_factory=dict)

    def of(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def make_recorder() -> Iterator[Callable[[], Recorder]]:
    """``make_recorder()``: a recording HTTP server (answers ``200 {"complete": true}`` unless
    scripted), stopped at the end of the test."""
    servers: list[ThreadingHTTPServer] = []

    def make() -> Recorder:
        state = Recorder()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                state.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                script = state.replies.get(self.path)
                if script is not None:
                    script(self)
                    return
                raw = b'{"complete": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        return state

    try:
        yield make
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def recorder(make_recorder: Callable[[], Recorder]) -> Recorder:
    """One recording HTTP server (see :func:`make_recorder`)."""
    return make_recorder()


# -- the job service as a process ---------------------------------------------------------------


@dataclass
class JobService:
    """``jobs worker`` running in a process of its own."""

    process: subprocess.Popen[bytes]
    port: int
    callback_url: str
    log: Path
    worker_id: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def status(self, key: str) -> int:
        """A line of ``/proc/<pid>/status`` in kB (``VmRSS``, ``VmHWM``)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)


def service_env(conninfo: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a test job service on 127.0.0.1 (``extra`` wins)."""
    return {
        **_base_env(),
        "DATABASE_URL": conninfo,
        "HOSTNAME": "sec-worker-1",
        "INTERNAL_JOBS_CALLBACK_PORT": str(port),
        "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{port}/callback",
        "JOBS_CALLBACK_BIND": "127.0.0.1",
        "JOBS_SCHEDULER_ENABLED": "false",
        "JOBS_POLL_INTERVAL": "0.1",
        "JOBS_HEARTBEAT_INTERVAL": "0.5",
        "JOBS_DEAD_WORKER_AFTER": "5",
        "JOBS_SIGNING_SECRET": SECRET,
        **extra,
    }


StartService = Callable[..., JobService]


@pytest.fixture
def job_service(db_conninfo: str, tmp_path: Path) -> Iterator[StartService]:
    """``start(**env)``: ``jobs worker`` on this test's database, ready (callback port up)."""
    started: list[JobService] = []

    def start(**extra: str) -> JobService:
        port = free_port()
        env = service_env(db_conninfo, port, **extra)
        log = tmp_path / f"jobs-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(BIN / "jobs"), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        service = JobService(process, port, env["INTERNAL_JOBS_CALLBACK_URL"], log, env["HOSTNAME"])
        started.append(service)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"jobs worker exited: {service.output()}")
            try:
                reply = httpx.get(f"{service.base}/health/readiness", timeout=2)
            except httpx.TransportError:
                return False
            return reply.status_code == 200

        wait_until(ready, "the job service to listen")
        return service

    try:
        yield start
    finally:
        for service in started:
            service.process.terminate()
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()


# -- a jobfn function as a process --------------------------------------------------------------


@dataclass
class FunctionProcess:
    """``jobfn serve`` of a test module in a process of its own."""

    process: subprocess.Popen[bytes]
    url: str
    runs: Path
    log: Path

    def ran(self) -> list[Any]:
        """The payloads the handler ran with."""
        if not self.runs.exists():
            return []
        return [json.loads(line) for line in self.runs.read_text().splitlines() if line]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


FUNCTION_MODULE = """
import json
import os

from jobfn import job_function


@job_function(name="sec-echo")
def echo(payload: object) -> dict[str, object]:
    with open(os.environ["SEC_RUNS"], "a") as out:
        out.write(json.dumps(payload) + "\\n")
    return {"echo": payload}
"""

StartFunction = Callable[..., FunctionProcess]


@pytest.fixture
def function_process(tmp_path: Path) -> Iterator[StartFunction]:
    """``start(**env)``: a ``jobfn serve`` function that records each run, ready."""
    started: list[FunctionProcess] = []

    def start(**extra: str) -> FunctionProcess:
        name = f"sec_fn_{len(started)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(FUNCTION_MODULE))
        port = free_port()
        runs = tmp_path / f"{name}.runs"
        log = tmp_path / f"{name}.log"
        env = {**_base_env(), "PORT": str(port), "SEC_RUNS": str(runs), **extra}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(BIN / "jobfn"), "serve", name, "--host", "127.0.0.1"],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        fn = FunctionProcess(process, f"http://127.0.0.1:{port}", runs, log)
        started.append(fn)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"function exited: {fn.output()}")
            try:
                return httpx.get(f"{fn.url}/health/readiness", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "the function to listen")
        return fn

    try:
        yield start
    finally:
        for fn in started:
            fn.process.terminate()
            try:
                fn.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                fn.process.kill()
                fn.process.wait()


# -- the database -------------------------------------------------------------------------------


class Db:
    """Enqueue, claim and read jobs of this test's database."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(text, params)
            return cur.fetchall() if cur.description else []

    def add(self, task: str, payload: object = None, *, db_id: str = DB_ID, **kw: Any) -> int:
        rows = self.query(
            "SELECT id FROM app_jobs.add_job(db_id := %s::uuid, identifier := %s,"
            " payload := %s::json, max_attempts := %s)",
            (db_id, task, json.dumps(payload if payload is not None else {}), kw.get("max", 5)),
        )
        return int(rows[0][0])

    def claim(self, worker: str, task: str) -> tuple[int, int]:
        """Claim one job of ``task`` as ``worker``: ``(id, attempt)``."""
        rows = self.query(
            "SELECT id, attempts FROM app_jobs.claim_jobs(%s, ARRAY[%s]::text[], '4 hours', 1)",
            (worker, task),
        )
        assert rows, f"nothing of {task} to claim"
        return int(rows[0][0]), int(rows[0][1])

    def job(self, job_id: int) -> dict[str, Any] | None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            cur.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", (job_id,))
            return cur.fetchone()

    def history(self, job_id: int) -> dict[str, Any] | None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.cursor(row_factory=psycopg.rows.dict_row)
            cur.execute("SELECT * FROM app_jobs.job_history WHERE job_id = %s", (job_id,))
            return cur.fetchone()


@pytest.fixture
def db(db_conninfo: str) -> Db:
    return Db(db_conninfo)


# -- signing like a function would --------------------------------------------------------------


def callback_headers(
    *,
    worker: str,
    job_id: int | str,
    attempt: int | str | None,
    url: str,
    body: bytes,
    secret: str | None = SECRET,
    database_id: str = DB_ID,
    error: bool = False,
    purpose: str = "callback",
) -> dict[str, str]:
    """The headers of a (signed, unless ``secret`` is None) callback."""
    headers = {
        "Content-Type": "application/json",
        "X-Worker-Id": worker,
        "X-Job-Id": str(job_id),
        "X-Database-Id": database_id,
    }
    if attempt is not None:
        headers["X-Job-Attempt"] = str(attempt)
    if error:
        headers["X-Job-Error"] = "true"
    if secret is not None:
        envelope = protocol.Envelope(
            purpose,
            worker,
            str(job_id),
            "" if attempt is None else str(attempt),
            database_id,
            url,
            "true" if error else "",
            body,
        )
        headers["X-Job-Signature"] = protocol.sign(secret, envelope, int(time.time()))
    return headers


def post(url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
    """POST raw ``body``; header values go out as UTF-8 bytes (whatever a test puts in)."""
    raw = [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers.items()]
    return httpx.post(url, content=body, headers=raw, timeout=30)


class Wire:
    """What tests use from here (conftest modules are not importable): constants, signing."""

    SECRET = SECRET
    OLD_SECRET = OLD_SECRET
    DB_ID = DB_ID
    OTHER_DB_ID = OTHER_DB_ID
    callback_headers = staticmethod(callback_headers)
    post = staticmethod(post)
    wait_until = staticmethod(wait_until)
    free_port = staticmethod(free_port)


@pytest.fixture
def wire() -> type[Wire]:
    return Wire
