"""The reference Node worker's exact request, replayed byte for byte.

Only the headers the reference worker sends, in its order; the callback must arrive the way
the reference callback server reads it (POST /callback, X-Worker-Id, X-Job-Id, X-Database-Id,
``X-Job-Error: true`` exactly on error, ``{"status": ...}`` body).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jobfn import CallbackPolicy, job_function

if TYPE_CHECKING:
    from tests.sdk.conftest import CallbackServer, Serve

DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


@job_function(name="wrapped-task", callback=CallbackPolicy(backoff=0.01))
def wrapped_task(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("mode") == "fail":
        raise RuntimeError("deliberate failure from fn")
    return {"echo": payload}


def reference_request(function_url: str, callback_url: str, job_id: str, body: bytes) -> bytes:
    host = urlsplit(function_url).netloc
    head = (
        "POST /wrapped-task HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-Worker-Id: seedref-worker-1\r\n"
        f"X-Job-Id: {job_id}\r\n"
        f"X-Database-Id: {DATABASE_ID}\r\n"
        f"X-Callback-Url: {callback_url}\r\n"
        f"Host: {host}\r\n"
        "Connection: keep-alive\r\n"
        "\r\n"
    )
    return head.encode() + body


async def exchange(function_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes; the status, headers and body of the reply."""
    parts = urlsplit(function_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()
        await writer.wait_closed()


async def test_reference_worker_success(callback_server: CallbackServer, serve_app: Serve) -> None:
    body = b'{"mode":"ok","hello":"world"}'
    async with serve_app(wrapped_task) as served:
        request = reference_request(served.url, f"{callback_server.url}/callback", "7", body)
        status, headers, reply = await exchange(served.url, request)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert json.loads(reply) == {
            "complete": True,
            "result": {"echo": {"mode": "ok", "hello": "world"}},
        }
        [callback] = await callback_server.wait_for(1)
    assert callback.method == "POST"
    assert callback.path == "/callback"
    assert callback.headers["x-worker-id"] == "seedref-worker-1"
    assert callback.headers["x-job-id"] == "7"
    assert callback.headers["x-database-id"] == DATABASE_ID
    assert callback.headers["content-type"] == "application/json"
    assert "x-job-error" not in callback.headers  # the reference server would fail the job
    assert callback.json == {
        "status": "success",
        "result": {"echo": {"mode": "ok", "hello": "world"}},
    }


async def test_reference_worker_failure(callback_server: CallbackServer, serve_app: Serve) -> None:
    body = b'{"mode":"fail"}'
    async with serve_app(wrapped_task) as served:
        # A callback URL whose path is "/" means /callback, as in the reference.
        request = reference_request(served.url, f"{callback_server.url}/", "8", body)
        status, headers, reply = await exchange(served.url, request)
        # Unlike the reference (200 for a thrown error, R6), the status says it failed.
        assert status == 500
        assert headers["x-job-error"] == "true"
        assert json.loads(reply) == {"error": "deliberate failure from fn"}
        [callback] = await callback_server.wait_for(1)
    assert callback.path == "/callback"
    # The reference callback server fails the job only when X-Job-Error is exactly "true".
    assert [v for k, v in callback.raw_headers if k.lower() == "x-job-error"] == ["true"]
    assert callback.headers["x-job-id"] == "8"
    assert callback.headers["x-worker-id"] == "seedref-worker-1"
    assert callback.headers["x-database-id"] == DATABASE_ID
    # It stores body.error as last_error: the handler's message, not "HTTP 500".
    assert callback.json == {"status": "error", "error": "deliberate failure from fn"}


async def test_reference_worker_oversized_payload_still_reports(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    # The reference function sent no callback for a body over its limit (R4): the job stayed
    # locked for hours. Ours answers 413 and reports the failure.
    body = json.dumps({"blob": "x" * (1024 * 1024)}).encode()
    async with serve_app(wrapped_task) as served:
        request = reference_request(served.url, f"{callback_server.url}/callback", "9", body)
        status, _, reply = await exchange(served.url, request)
        assert status == 413
        [callback] = await callback_server.wait_for(1)
    assert callback.headers["x-job-error"] == "true"
    assert callback.json["status"] == "error"
    assert callback.json["error"] == json.loads(reply)["error"]
