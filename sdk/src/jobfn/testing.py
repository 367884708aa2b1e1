"""Test a job function in a few lines: run it in-process, get its reply and its callbacks.

.. code-block:: python

    from jobfn.testing import invoke

    def test_sends_greeting() -> None:
        run = invoke(greet, {"name": "Ada"})
        assert run.status == 200
        assert run.result == {"greeting": "Hello, Ada"}
        assert run.callbacks[-1].body == {"status": "success", "result": run.result}

The request carries job headers like a worker's (override or drop them with ``headers``);
callbacks (and progress reports) are captured instead of sent, and background (202) jobs are
awaited before the :class:`Invocation` is returned.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic_core import from_json, to_json

from jobfn import protocol
from jobfn.asgi import InProcessCaller, in_process_caller, post_scope
from jobfn.callback_sender import _client_override
from jobfn.function import JobFunction

TEST_WORKER_ID = "test-worker"
TEST_DATABASE_ID = "00000000-0000-4000-8000-000000000000"
TEST_CALLBACK_URL = "http://callbacks.test/callback"


@dataclass(frozen=True, slots=True)
class CapturedCallback:
    """A callback the function sent (it did not leave the process)."""

    url: str
    headers: dict[str, str]
    """Request headers, lower-case names."""
    body: Any
    """The JSON body, parsed."""

    @property
    def status(self) -> str | None:
        """``success``, ``error`` or ``progress``."""
        value = self.body.get("status") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


@dataclass(slots=True)
class Invocation:
    """The reply of one in-process request and the callbacks it caused."""

    status: int
    headers: dict[str, str]
    """Reply headers, lower-case names."""
    raw: bytes
    callbacks: list[CapturedCallback] = field(default_factory=list)

    @property
    def body(self) -> Any:
        """The reply body, parsed as JSON (``None`` when empty)."""
        return from_json(self.raw) if self.raw else None

    @property
    def result(self) -> Any:
        """``body["result"]`` of a completed job (else ``None``)."""
        body = self.body
        return body.get("result") if isinstance(body, dict) else None

    @property
    def error(self) -> str | None:
        """``body["error"]`` of a failed job (else ``None``)."""
        body = self.body
        value = body.get("error") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None

    @property
    def permanent(self) -> bool:
        """Whether the reply marks the failure permanent (``X-Job-Retry: false``)."""
        return self.headers.get(protocol.HEADER_RETRY) == "false"

    @property
    def progress(self) -> list[tuple[int, str | None]]:
        """The progress reports sent, as ``(percent, message)``."""
        return [
            (cb.body["progress"], cb.body.get("message"))
            for cb in self.callbacks
            if cb.status == "progress"
        ]

    @property
    def outcome_callback(self) -> CapturedCallback | None:
        """The callback that settled the job (success or error), if one was sent."""
        final = [cb for cb in self.callbacks if cb.status in ("success", "error")]
        return final[-1] if final else None


class _Recorder(httpx.AsyncBaseTransport):
    def __init__(self, calls: list[CapturedCallback], status: int) -> None:
        self.calls = calls
        self.status = status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = await request.aread()
        self.calls.append(
            CapturedCallback(
                url=str(request.url),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=from_json(raw) if raw else None,
            )
        )
        return httpx.Response(self.status, json={"ok": self.status < 400})


def job_headers(
    fn: JobFunction,
    body: bytes,
    *,
    job_id: str = "1",
    completion: Literal["callback", "reply"] = "callback",
    overrides: Mapping[str, str | None] | None = None,
) -> list[tuple[str, str]]:
    """The headers a worker would send (signed, scheme v2, when the function has a secret).

    Built by :func:`jobfn.protocol.dispatch_headers` (as a worker builds them), then
    ``overrides`` applied (a ``None`` value drops the header); the signature is made last, over
    the final headers, unless ``overrides`` names one.
    """
    base = protocol.dispatch_headers(
        worker_id=TEST_WORKER_ID,
        callback_url=TEST_CALLBACK_URL,
        job_id=job_id,
        task=fn.name,
        attempt=1,
        max_attempts=25,
        body=body,
        database_id=TEST_DATABASE_ID,
        completion_reply=completion == "reply",
    )
    headers: dict[str, str | None] = {name.lower(): value for name, value in base}
    for name, value in (overrides or {}).items():
        headers[name.lower()] = value
    signer = fn.signer
    if signer is not None and protocol.HEADER_SIGNATURE not in headers:
        job = protocol.parse_job_headers(
            [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers.items() if v]
        )
        headers[protocol.HEADER_SIGNATURE] = signer.sign(
            protocol.dispatch_envelope(job, body), int(time.time())
        )
    return [(name, value) for name, value in headers.items() if value is not None]


async def ainvoke(
    fn: JobFunction,
    payload: Any = None,
    headers: Mapping[str, str | None] | None = None,
    *,
    body: bytes | None = None,
    job_id: str = "1",
    completion: Literal["callback", "reply"] = "callback",
    callback_status: int = 200,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> Invocation:
    """Send ``payload`` to ``fn`` in-process, like a worker would; see :func:`invoke`."""
    raw_body = body if body is not None else to_json({} if payload is None else payload)
    pairs = job_headers(fn, raw_body, job_id=job_id, completion=completion, overrides=headers)
    scope = post_scope(
        [(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in pairs]
        + [(b"content-length", str(len(raw_body)).encode())],
        server=("testserver", 80),
    )
    done = asyncio.Event()
    pending: list[bytes] = [raw_body]
    status = 0
    reply_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                reply_headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    calls: list[CapturedCallback] = []
    client = httpx.AsyncClient(transport=_Recorder(calls, callback_status))
    token = _client_override.set(client)
    # The captured callback URL never leaves the process; the request is still verified.
    captured = in_process_caller.set(InProcessCaller(frozenset({TEST_CALLBACK_URL})))
    try:
        async with asyncio.timeout(timeout):
            await fn(scope, receive, send)
            if status == 202:
                await fn.drain()
    finally:
        in_process_caller.reset(captured)
        _client_override.reset(token)
        await client.aclose()
    return Invocation(status, reply_headers, b"".join(chunks), calls)


def invoke(
    fn: JobFunction,
    payload: Any = None,
    headers: Mapping[str, str | None] | None = None,
    *,
    body: bytes | None = None,
    job_id: str = "1",
    completion: Literal["callback", "reply"] = "callback",
    callback_status: int = 200,
    timeout: float = 60.0,
) -> Invocation:
    """Send ``payload`` to ``fn`` in-process and return its reply and callbacks.

    - ``headers``: override the worker-like job headers; a ``None`` value drops one (drop
      ``X-Callback-Url`` to get no callback, or all job headers for a direct invocation);
    - ``body``: raw request bytes instead of ``payload`` as JSON;
    - ``completion="reply"``: send ``X-Job-Completion: reply`` like our worker (no callback
      except for background jobs);
    - ``callback_status``: the status the captured callbacks are answered with.

    Works in synchronous and asynchronous tests (from a running event loop it runs on a
    thread of its own); in ``async`` tests ``await ainvoke(...)`` is the native form.
    """

    def run() -> Invocation:
        return asyncio.run(
            ainvoke(
                fn,
                payload,
                headers,
                body=body,
                job_id=job_id,
                completion=completion,
                callback_status=callback_status,
                timeout=timeout,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    if not in_loop:
        return run()
    box: list[Invocation | BaseException] = []

    def in_thread() -> None:
        try:
            box.append(run())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=in_thread, name="jobfn-invoke")
    thread.start()
    thread.join()
    outcome = box[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
