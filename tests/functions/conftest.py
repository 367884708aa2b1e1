"""Fixtures of the function tests: stand-ins for external services, and served functions.

- :class:`StandInMailgun`: ``POST /v3/<domain>/messages`` like Mailgun, recording the
  multipart form, the Basic credentials and the path;
- :class:`StandInGraphQL`: a GraphQL-over-HTTP endpoint recording each request (headers with
  the real ``Host``, body) and answering by operation name from configurable data;
- :class:`SmtpSink`: a real SMTP server (aiosmtpd) keeping the raw messages;
- :class:`FunctionProcess`: ``jobfn serve <module>`` on a free port, as deployed.

Each stand-in can be told to fail (``status``) or to hang until released (``hang``), which the
functions must turn into a timeout.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HANG_LIMIT = 30.0
"""A hanging stand-in answers after this long at most (the function gives up well before)."""

JOBFN = str(Path(sys.executable).parent / "jobfn")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorded:
    """One HTTP request a stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """The ``Authorization: Basic`` user and password."""
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password

    def form(self) -> dict[str, str]:
        """The fields of a ``multipart/form-data`` body (fails when the body is not one)."""
        content_type = self.headers.get("content-type", "")
        assert content_type.startswith("multipart/form-data"), content_type
        parsed = message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + self.body, policy=policy.HTTP
        )
        fields: dict[str, str] = {}
        for part in parsed.iter_parts() if isinstance(parsed, EmailMessage) else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(name, str)
            assert isinstance(payload, bytes)
            fields[name] = payload.decode()
        return fields


class _StandIn:
    """An HTTP server on 127.0.0.1 in a thread; subclasses answer in :meth:`answer`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.status: int | None = None
        self.hang = False
        self._release = threading.Event()
        self._arrived = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                recorded = Recorded(
                    "POST",
                    self.path,
                    {key.lower(): value for key, value in self.headers.items()},
                    self.rfile.read(length),
                )
                with outer._arrived:
                    outer.requests.append(recorded)
                    outer._arrived.notify_all()
                if outer.hang:
                    outer._release.wait(HANG_LIMIT)
                status, body = outer.answer(recorded)
                raw = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, request: Recorded) -> tuple[int, Any]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the requests and answer normally again."""
        self._release.set()
        self.requests.clear()
        self.status = None
        self.hang = False
        self._release = threading.Event()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


class StandInMailgun(_StandIn):
    """Mailgun's ``POST /v3/<domain>/messages``: 200 with an id, or ``status`` when set."""

    def answer(self, request: Recorded) -> tuple[int, Any]:
        if self.status is not None:
            return self.status, {"message": f"stand-in failure {self.status}"}
        return 200, {"id": f"<{len(self.requests)}@stand-in>", "message": "Queued. Thank you."}

    @property
    def sent(self) -> list[Recorded]:
        return list(self.requests)


class StandInGraphQL(_StandIn):
    """A GraphQL endpoint answering ``GetDatabaseInfo`` / ``GetUser`` from ``sites``/``users``.

    ``sites`` maps a database id to the site node (``None``: no site); ``users`` maps a user
    id to the user node. Every request is recorded with its real ``Host`` header.
    """

    def __init__(self) -> None:
        self.sites: dict[str, dict[str, Any] | None] = {}
        self.users: dict[str, dict[str, Any]] = {}
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.sites.clear()
        self.users.clear()

    def answer(self, request: Recorded) -> tuple[int, Any]:
        if self.status is not None:
            return self.status, {"errors": [{"message": f"stand-in failure {self.status}"}]}
        body = request.json()
        variables = body.get("variables") or {}
        if body.get("operationName") == "GetDatabaseInfo":
            site = self.sites.get(variables.get("databaseId", ""))
            sites = [] if site is None else [site]
            return 200, {"data": {"databases": {"nodes": [{"sites": {"nodes": sites}}]}}}
        if body.get("operationName") == "GetUser":
            user = self.users.get(variables.get("userId", ""))
            return 200, {"data": {"users": {"nodes": [] if user is None else [user]}}}
        return 200, {"errors": [{"message": "unknown operation"}]}

    def of(self, operation: str) -> list[Recorded]:
        return [item for item in self.requests if item.json().get("operationName") == operation]


class _Sink:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        self.messages.append((envelope, message_from_bytes(raw, policy=policy.default)))
        return "250 OK"


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping what it receives."""

    def __init__(self) -> None:
        self._handler = _Sink()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=free_port())
        self._controller.start()
        self.port = int(self._controller.port)

    @property
    def messages(self) -> list[tuple[Envelope, Message]]:
        return self._handler.messages

    def close(self) -> None:
        self._controller.stop()


JOB_HEADERS = {
    "Content-Type": "application/json",
    "X-Worker-Id": "test-worker-1",
    "X-Job-Id": "42",
    "X-Task-Identifier": "",
    "X-Job-Attempt": "1",
    "X-Job-Max-Attempts": "5",
    "X-Job-Completion": "reply",
}


@dataclass
class Reply:
    """A function's answer to one job request."""

    status: int
    headers: httpx.Headers
    body: Any

    @property
    def permanent(self) -> bool:
        return self.status < 500 and self.headers.get("x-job-retry") == "false"

    @property
    def retryable(self) -> bool:
        return self.status >= 500 and self.headers.get("x-job-retry") != "false"

    @property
    def error(self) -> str:
        return str(self.body.get("error", "")) if isinstance(self.body, dict) else ""


@dataclass
class FunctionProcess:
    """A job function served by ``jobfn serve`` in a process of its own."""

    module: str
    env: Mapping[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, log_dir: Path) -> FunctionProcess:
        self.log_path = log_dir / f"{self.module}-{self.port}.log"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MAILGUN", "SMTP_", "EMAIL_", "GRAPHQL", "META_"))
        }
        env.update(self.env)
        env["PORT"] = str(self.port)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [JOBFN, "serve", self.module, "--host", "127.0.0.1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.module} exited: {self.output}")
            try:
                if httpx.get(f"{self.url}health/readiness", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # no event to await: poll the port with a bounded deadline
        raise AssertionError(f"{self.module} did not become ready: {self.output}")

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def post(
        self,
        payload: Any,
        *,
        task: str,
        database_id: str | None = None,
        extra: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Reply:
        """POST ``payload`` with a worker's job headers; the function's reply."""
        headers = {**JOB_HEADERS, "X-Task-Identifier": task, **(extra or {})}
        if database_id is not None:
            headers["X-Database-Id"] = database_id
        response = httpx.post(
            self.url, content=json.dumps(payload), headers=headers, timeout=timeout
        )
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Reply(response.status_code, response.headers, body)

    def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        """The first log line containing ``text`` (bounded poll of the log file)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output.splitlines():
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {text!r} in:\n{self.output}")
            time.sleep(0.05)  # the log is a file written by another process: poll it

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


MAILGUN_KEY = "key-stand-in-123"
MAILGUN_DOMAIN = "mg.example.test"

Serve = Callable[[str, Mapping[str, str]], FunctionProcess]


@pytest.fixture(scope="module")
def mailgun_server() -> Iterator[StandInMailgun]:
    server = StandInMailgun()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mailgun(mailgun_server: StandInMailgun) -> StandInMailgun:
    """The stand-in Mailgun, reset for this test."""
    mailgun_server.reset()
    return mailgun_server


@pytest.fixture(scope="module")
def graphql_server() -> Iterator[StandInGraphQL]:
    server = StandInGraphQL()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def graphql(graphql_server: StandInGraphQL) -> StandInGraphQL:
    """The stand-in GraphQL API, reset for this test."""
    graphql_server.reset()
    return graphql_server


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    try:
        yield sink
    finally:
        sink.close()


@pytest.fixture
def smtp(smtp_server: SmtpSink) -> SmtpSink:
    """The SMTP server, emptied for this test."""
    smtp_server.messages.clear()
    return smtp_server


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """Start ``jobfn serve <module>`` with an environment; stopped at the end of the module."""
    started: list[FunctionProcess] = []
    log_dir: Path = tmp_path_factory.mktemp("function-logs")

    def start(module: str, env: Mapping[str, str]) -> FunctionProcess:
        process = FunctionProcess(module, env)
        started.append(process)
        return process.start(log_dir)

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="module")
def mailgun_env(mailgun_server: StandInMailgun) -> dict[str, str]:
    """Environment sending through the stand-in Mailgun (short timeout)."""
    return {
        "MAILGUN_API_KEY": MAILGUN_KEY,
        "MAILGUN_DOMAIN": MAILGUN_DOMAIN,
        "MAILGUN_FROM": "Jobs <jobs@example.test>",
        "MAILGUN_REPLY": "help@example.test",
        "MAILGUN_API_URL": mailgun_server.url,
        "EMAIL_SEND_TIMEOUT": "1",
    }


@pytest.fixture(scope="module")
def smtp_env(smtp_server: SmtpSink) -> dict[str, str]:
    """Environment sending through the local SMTP server."""
    return {
        "EMAIL_SEND_USE_SMTP": "true",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_server.port),
        "SMTP_FROM": "smtp-from@example.test",
    }
