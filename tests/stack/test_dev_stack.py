"""The README's first command: ``jobs-dev up`` brings up the whole system as local processes.

These tests start the real stack (job service, both functions, GraphQL API, mail inbox) as
subprocesses, enqueue a job for each function with ``jobs-dev add``, see the emails arrive in
the local inbox, then stop it with SIGINT and check that everything exited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.database import PG_ENV_VARS

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    process: subprocess.Popen[str]
    cwd: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "ready":
                self.ready.set()
        self.exited.set()

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def ports(self) -> dict[str, int]:
        state = json.loads((self.cwd / ".cache" / "dev" / "stack.json").read_text())
        ports: dict[str, int] = state["ports"]
        return ports

    def jobs_dev(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "jobs-dev"), *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )


def _start(cwd: Path, env: dict[str, str]) -> Stack:
    process = subprocess.Popen(
        [str(BIN / "jobs-dev"), "up", "--free-ports"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stack = Stack(process, cwd)
    threading.Thread(target=stack.read, daemon=True).start()
    return stack


def _stop(stack: Stack) -> int:
    """SIGINT the stack, wait for it and for its output to end; return its exit code."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGINT)
    try:
        code = stack.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(stack.process.pid, signal.SIGKILL)
        raise
    finally:
        stack.exited.wait(10)
        assert stack.process.stdout is not None
        stack.process.stdout.close()
    return code


def _env_without_database() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PG_ENV_VARS and k != "DATABASE_URL"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def stack(tmp_path: Path, empty_db_conninfo: str) -> Iterator[Stack]:
    """The stack on a configured (test) database, in a scratch working directory."""
    env = _env_without_database()
    env["DATABASE_URL"] = empty_db_conninfo
    running = _start(tmp_path, env)
    try:
        assert running.ready.wait(90), f"stack did not become ready:\n{running.output()}"
        yield running
    finally:
        if not running.exited.is_set():
            _stop(running)


def _inbox(stack: Stack) -> list[dict[str, object]]:
    port = stack.ports()["inbox_web"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/messages", timeout=5) as reply:
        messages: list[dict[str, object]] = json.loads(reply.read())
    return messages


def test_both_functions_complete_jobs_and_emails_reach_the_inbox(stack: Stack) -> None:
    simple = stack.jobs_dev(
        "add",
        "simple-email",
        json.dumps({"to": "ada@example.com", "subject": "Hello from jobs", "text": "It works"}),
    )
    assert simple.returncode == 0, simple.stdout + simple.stderr + stack.output()
    assert "completed" in simple.stdout

    link = stack.jobs_dev(
        "add",
        "email:send_verification_link",
        json.dumps(
            {
                "email_type": "email_verification",
                "email": "grace@example.com",
                "email_id": "e-1",
                "verification_token": "tok-1",
            }
        ),
    )
    assert link.returncode == 0, link.stdout + link.stderr + stack.output()
    assert "completed" in link.stdout

    messages = _inbox(stack)
    recipients = sorted(str(m["to"]) for m in messages)
    assert recipients == ["ada@example.com", "grace@example.com"]
    verification = next(m for m in messages if m["to"] == "grace@example.com")
    assert "verification_token=tok-1" in str(verification["html"])

    assert _stop(stack) == 0
    assert stack.exited.wait(10)
    assert "stopping" in stack.output()


def test_a_failing_job_reports_its_error(stack: Stack) -> None:
    result = stack.jobs_dev(
        "add", "simple-email", json.dumps({"to": "ada@example.com"}), "--max-attempts", "1"
    )
    assert result.returncode == 1
    assert "failed" in result.stdout
    assert "Missing required field 'subject'" in result.stdout


def test_embedded_postgres_is_used_when_no_database_is_configured(tmp_path: Path) -> None:
    running = _start(tmp_path, _env_without_database())
    try:
        assert running.ready.wait(120), f"stack did not become ready:\n{running.output()}"
        assert "embedded PostgreSQL" in running.output()
        assert (tmp_path / ".cache" / "dev" / "pg").is_dir()
    finally:
        code = _stop(running)
    assert code == 0, running.output()


def _post(url: str, headers: dict[str, str], body: bytes = b"{}") -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_stack_signs_both_ways_with_a_secret_of_its_own(stack: Stack) -> None:
    ports = stack.ports()
    # Nobody without the stack's secret completes a job through the callback port...
    forged = _post(
        f"http://127.0.0.1:{ports['callback']}/callback",
        {"Content-Type": "application/json", "X-Worker-Id": "dev-worker-1", "X-Job-Id": "1"},
        b'{"status": "success"}',
    )
    assert forged == 401
    # ...or runs a function (which would send email) by posting to it.
    unsigned = _post(
        f"http://127.0.0.1:{ports['simple_email']}/",
        {"Content-Type": "application/json"},
        json.dumps({"to": "x@example.com", "subject": "s", "text": "t"}).encode(),
    )
    assert unsigned == 401
    assert _inbox(stack) == []
    # The stack's own worker still gets jobs done.
    done = stack.jobs_dev(
        "add", "simple-email", json.dumps({"to": "ada@example.com", "subject": "s", "text": "t"})
    )
    assert done.returncode == 0, done.stdout + done.stderr + stack.output()


def test_the_printed_dashboard_answers_on_loopback_without_a_token(stack: Stack) -> None:
    line = next(row for row in stack.lines if row.strip().startswith("dashboard "))
    url = line.split()[1]
    assert url == f"http://127.0.0.1:{stack.ports()['callback']}/dashboard"
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        page = reply.read().decode()
    assert "<html" in page.lower()
    assert "sign in" not in page.lower()
