"""Interoperability with the reference Node packages from npm, both directions.

(a) Our worker (``jobs worker``: worker + callback server) drives a function written with the
    reference wrapper ``@constructive-io/knative-job-fn`` 1.14.0 (``node/reference-fn.js``).
(b) The reference worker ``@constructive-io/knative-job-worker`` 3.0.4 and the reference callback
    server ``@constructive-io/knative-job-server`` 2.16.2 run against our SQL schema and drive a
    ``jobfn`` function (``functions/interop_jobfn.py``) served by uvicorn.

Every component is a real process on 127.0.0.1; the job's fate is read from PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

pytestmark = pytest.mark.interop

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TASK = "interop-echo"
DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
START_TIMEOUT = 30.0
# The reference worker polls every 15 s when no notification wakes it; leave room for that.
SETTLE_TIMEOUT = 60.0
POLL_INTERVAL = 0.05

ADD_JOB = """
SELECT id FROM app_jobs.add_job(
    db_id => %(db_id)s::uuid,
    identifier => %(task)s,
    payload => %(payload)s::json,
    max_attempts => %(max_attempts)s
)
"""
HISTORY_ROW = """
SELECT job_id, status, attempts, max_attempts, last_error, result, worker_id
FROM app_jobs.job_history WHERE job_id = %(job_id)s
"""
QUEUED_ROW = "SELECT id FROM app_jobs.jobs WHERE id = %(job_id)s"

# Variables the started processes must not inherit from the test run's environment.
_SCRUBBED_PREFIXES = ("PG", "JOBS_", "INTERNAL_", "NODE_")
_SCRUBBED = frozenset({"DATABASE_URL", "HOSTNAME", "KNATIVE_SERVICE_URL", "PORT"})


# --------------------------------------------------------------------------------------------
# Processes


class Process:
    """A subprocess in its own process group whose output lines are collected as they come."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], stop_signal: int
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self.popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def tail(self, count: int = 40) -> str:
        """The last ``count`` output lines, for failure messages."""
        with self._changed:
            shown = self.lines[-count:]
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(shown)

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Wait (bounded) for an output line matching ``pattern``; fail if the process ends."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    break
                self._changed.wait(remaining)
        state = "ended" if self._closed else f"printed nothing like it within {timeout:.0f} s"
        pytest.fail(f"{self.name}: waiting for /{pattern}/, the process {state}\n{self.tail()}")

    def received(self, prefix: str) -> list[Any]:
        """The JSON documents of the output lines that start with ``prefix``."""
        with self._changed:
            lines = list(self.lines)
        return [json.loads(line[len(prefix) :]) for line in lines if line.startswith(prefix)]

    def stop(self) -> None:
        """Signal the whole process group; escalate to SIGKILL if it does not exit in time."""
        for sig in (self.stop_signal, signal.SIGKILL):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10.0)
        # Children the leader left behind die with its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10.0)
        self._reader.join(5.0)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@dataclass
class Stack:
    """The processes of one test, stopped in reverse order at the end of the test."""

    processes: list[Process]

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        stop_signal: int = signal.SIGTERM,
    ) -> Process:
        process = Process(name, argv, env, stop_signal)
        self.processes.append(process)
        return process

    def report(self) -> str:
        return "\n".join(process.tail() for process in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def stack() -> Iterator[Stack]:
    started = Stack([])
    try:
        yield started
    finally:
        started.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(process: Process, port: int, timeout: float = START_TIMEOUT) -> None:
    """Poll (bounded) until ``port`` on 127.0.0.1 accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(POLL_INTERVAL)
    pytest.fail(f"{process.name}: port {port} never accepted connections\n{process.tail()}")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without database/jobs settings, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED and not key.startswith(_SCRUBBED_PREFIXES)
    }
    env.update(NO_COLOR="1", FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def pg_env(conninfo: str) -> dict[str, str]:
    """The ``PG*`` variables (node-postgres reads these) naming the database of ``conninfo``."""
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
    }
    params = conninfo_to_dict(conninfo)
    return {var: str(params[key]) for key, var in names.items() if params.get(key) is not None}


# --------------------------------------------------------------------------------------------
# Database


def add_job(conninfo: str, payload: Mapping[str, object], *, max_attempts: int) -> int:
    """Enqueue one ``interop-echo`` job with the reference ``add_job``; return its id."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            ADD_JOB,
            {
                "db_id": DATABASE_ID,
                "task": TASK,
                "payload": json.dumps(payload),
                "max_attempts": max_attempts,
            },
        ).fetchone()
    assert row is not None
    job_id: int = row[0]
    return job_id


def wait_for_history(conninfo: str, job_id: int, stack: Stack) -> dict[str, Any]:
    """Poll (bounded: the database sends no event for it) until job ``job_id`` is finished."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(HISTORY_ROW, {"job_id": job_id}).fetchone()
            if row is not None:
                assert conn.execute(QUEUED_ROW, {"job_id": job_id}).fetchone() is None, (
                    f"job {job_id} is in job_history and still in jobs"
                )
                return row
            time.sleep(POLL_INTERVAL)
        queued = conn.execute(
            "SELECT * FROM app_jobs.jobs WHERE id = %(job_id)s", {"job_id": job_id}
        ).fetchone()
    pytest.fail(
        f"job {job_id} did not finish within {SETTLE_TIMEOUT:.0f} s; in jobs: {queued}\n"
        + stack.report()
    )


# --------------------------------------------------------------------------------------------
# (b) reference worker + reference callback server → our schema → jobfn function


@dataclass
class ReferenceSide:
    """The jobfn function and the reference callback server, running; the worker on demand."""

    stack: Stack
    env: Mapping[str, str]
    node_modules: Path
    record: Path
    worker_id: str
    callback_url: str

    def start_worker(self) -> Process:
        """Start the reference worker; it claims what is queued as soon as it is connected."""
        worker = self.stack.start(
            "reference knative-job-worker",
            ["node", str(self.node_modules / "@constructive-io/knative-job-worker/run.js")],
            self.env,
            stop_signal=signal.SIGKILL,  # the reference exits on neither SIGTERM nor SIGINT
        )
        worker.wait_for_line(r"connected and looking for jobs")
        return worker

    def runs(self) -> list[dict[str, Any]]:
        """What the jobfn function was called with, one entry per run."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]


@pytest.fixture
def reference_side(
    db_conninfo: str, reference_node_modules: Path, stack: Stack, tmp_path: Path
) -> ReferenceSide:
    """The jobfn function (uvicorn) and the reference callback server, both listening.

    The reference worker signs nothing, so the function runs without a secret: it then calls
    back only to the URLs it is told to allow (``JOBS_CALLBACK_ALLOWED_URLS``), here the
    reference callback server.
    """
    record = tmp_path / "runs.jsonl"
    callback_port = free_port()
    callback_url = f"http://127.0.0.1:{callback_port}/callback"
    function = stack.start(
        "jobfn function (uvicorn)",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(HERE / "functions"),
            "interop_jobfn:interop_echo",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        clean_env(INTEROP_RECORD=str(record), JOBS_CALLBACK_ALLOWED_URLS=callback_url),
    )
    fn_port = int(function.wait_for_line(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")[1])
    worker_id = "interop-reference-worker"
    env = clean_env(
        **pg_env(db_conninfo),
        NODE_ENV="development",
        NODE_PATH=str(reference_node_modules),
        HOSTNAME=worker_id,
        JOBS_SCHEMA="app_jobs",
        JOBS_SUPPORT_ANY="true",
        INTERNAL_GATEWAY_URL=f"http://127.0.0.1:{fn_port}",
        INTERNAL_GATEWAY_DEVELOPMENT_MAP=json.dumps({TASK: f"http://127.0.0.1:{fn_port}/"}),
        INTERNAL_JOBS_CALLBACK_PORT=str(callback_port),
        INTERNAL_JOBS_CALLBACK_URL=callback_url,
    )
    server = stack.start(
        "reference knative-job-server",
        ["node", str(reference_node_modules / "@constructive-io/knative-job-server/run.js")],
        env,
        stop_signal=signal.SIGKILL,
    )
    wait_for_port(server, callback_port)
    return ReferenceSide(
        stack, env, reference_node_modules, record, worker_id, env["INTERNAL_JOBS_CALLBACK_URL"]
    )


def test_reference_worker_completes_a_jobfn_job_through_the_callback(
    reference_side: ReferenceSide, db_conninfo: str, stack: Stack
) -> None:
    side = reference_side
    payload = {"mode": "ok", "hello": "world", "n": [1, 2, 3]}
    job_id = add_job(db_conninfo, payload, max_attempts=3)
    side.start_worker()

    row = wait_for_history(db_conninfo, job_id, stack)

    assert row["status"] == "completed", row
    assert row["attempts"] == 1
    assert row["worker_id"] == side.worker_id
    assert row["last_error"] is None
    # The function ran once, with the payload and the job facts from the reference headers.
    runs = side.runs()
    assert [run["payload"] for run in runs] == [payload]
    assert runs[0]["job_id"] == str(job_id)
    assert runs[0]["worker_id"] == side.worker_id
    assert runs[0]["database_id"] == DATABASE_ID
    assert runs[0]["callback_url"] == side.callback_url


def test_reference_worker_records_a_jobfn_failure_with_its_message(
    reference_side: ReferenceSide, db_conninfo: str, stack: Stack
) -> None:
    side = reference_side
    message = "the mail server said no (interop b)"
    job_id = add_job(db_conninfo, {"mode": "fail", "message": message}, max_attempts=1)
    side.start_worker()

    row = wait_for_history(db_conninfo, job_id, stack)

    assert row["status"] == "failed", row
    assert row["attempts"] == 1
    assert row["last_error"] == message, row
    assert len(side.runs()) == 1


# --------------------------------------------------------------------------------------------
# (a) our worker + callback server → function written with @constructive-io/knative-job-fn


RECEIVED = "INTEROP-RECEIVED "


@dataclass
class OurSide:
    """The knative-job-fn function, running; our ``jobs worker`` on demand."""

    stack: Stack
    function: Process
    fn_port: int
    conninfo: str
    worker_id: str = "interop-our-worker"
    callback_url: str = ""

    def start_worker(self) -> Process:
        """Start ``jobs worker`` (worker + callback server, no scheduler) and wait for it.

        The reference function wrapper sends unsigned callbacks: accepting them is the explicit
        choice ``JOBS_INSECURE_CALLBACKS=true`` (the service refuses to start otherwise).
        """
        callback_port = free_port()
        self.callback_url = f"http://127.0.0.1:{callback_port}/callback"
        fn_url = f"http://127.0.0.1:{self.fn_port}"
        worker = self.stack.start(
            "jobs worker",
            [str(BIN / "jobs"), "worker"],
            clean_env(
                DATABASE_URL=self.conninfo,
                HOSTNAME=self.worker_id,
                JOBS_SUPPORT_ANY="true",
                INTERNAL_GATEWAY_URL=fn_url,
                INTERNAL_GATEWAY_DEVELOPMENT_MAP=json.dumps({TASK: f"{fn_url}/"}),
                INTERNAL_JOBS_CALLBACK_PORT=str(callback_port),
                INTERNAL_JOBS_CALLBACK_URL=self.callback_url,
                JOBS_CALLBACK_BIND="127.0.0.1",
                JOBS_SCHEDULER_ENABLED="false",
                JOBS_INSECURE_CALLBACKS="true",
            ),
        )
        wait_for_port(worker, callback_port)
        return worker

    def requests(self) -> list[dict[str, Any]]:
        """The requests the function received: ``{"headers": {...}, "body": ...}``."""
        return self.function.received(RECEIVED)


@pytest.fixture
def our_side(db_conninfo: str, reference_node_modules: Path, stack: Stack) -> OurSide:
    """The function written with @constructive-io/knative-job-fn, listening."""
    function = stack.start(
        "knative-job-fn function",
        ["node", str(HERE / "node" / "reference-fn.js")],
        clean_env(NODE_ENV="development", NODE_PATH=str(reference_node_modules), PORT="0"),
        stop_signal=signal.SIGKILL,
    )
    fn_port = int(function.wait_for_line(r"^INTEROP-LISTENING (\d+)$")[1])
    return OurSide(stack, function, fn_port, db_conninfo)


def test_our_worker_completes_a_knative_job_fn_job(
    our_side: OurSide, db_conninfo: str, stack: Stack
) -> None:
    payload = {"mode": "ok", "hello": "world", "n": [1, 2, 3]}
    job_id = add_job(db_conninfo, payload, max_attempts=3)
    worker = our_side.start_worker()

    row = wait_for_history(db_conninfo, job_id, stack)

    assert row["status"] == "completed", row
    assert row["attempts"] == 1
    assert row["worker_id"] == our_side.worker_id
    assert row["last_error"] is None
    # The function got the reference dispatch headers from our worker, once.
    requests = our_side.requests()
    assert len(requests) == 1, requests
    headers, body = requests[0]["headers"], requests[0]["body"]
    assert body == payload
    assert headers["x-job-id"] == str(job_id)
    assert headers["x-worker-id"] == our_side.worker_id
    assert headers["x-database-id"] == DATABASE_ID
    assert headers["x-callback-url"] == our_side.callback_url
    # The reply settled the job and the wrapper's callback came on top: the worker lives on.
    assert worker.popen.poll() is None, worker.tail()


def test_our_worker_settles_a_knative_job_fn_202_through_the_callback(
    our_side: OurSide, db_conninfo: str, stack: Stack
) -> None:
    # A 202 reply leaves the job to the callback: the wrapper's success callback, sent to our
    # callback server, is what completes it.
    job_id = add_job(db_conninfo, {"mode": "accepted"}, max_attempts=3)
    worker = our_side.start_worker()

    row = wait_for_history(db_conninfo, job_id, stack)

    assert row["status"] == "completed", row
    assert row["attempts"] == 1
    assert row["worker_id"] == our_side.worker_id
    assert len(our_side.requests()) == 1
    assert worker.popen.poll() is None, worker.tail()


def test_our_worker_records_a_knative_job_fn_error_with_its_message(
    our_side: OurSide, db_conninfo: str, stack: Stack
) -> None:
    message = "the mail server said no (interop a)"
    job_id = add_job(db_conninfo, {"mode": "fail", "message": message}, max_attempts=1)
    worker = our_side.start_worker()

    row = wait_for_history(db_conninfo, job_id, stack)

    assert row["status"] == "failed", row
    assert row["attempts"] == 1
    assert row["last_error"] == message, row
    assert len(our_side.requests()) == 1
    assert worker.popen.poll() is None, worker.tail()
