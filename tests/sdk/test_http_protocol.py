"""``jobfn serve``'s uvicorn settings (:func:`jobfn.serve.config_for`: one write per reply,
no proxy headers) seen from a raw socket on 127.0.0.1: complete replies, keep-alive,
``100 Continue``, HTTP/1.0 and the health routes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from jobfn import JobFunction, job_function, protocol
from jobfn.serve import config_for

SECRET = "http-protocol-test-secret-0123456789abcdef"
WAIT = 20.0


@job_function(name="greet", signing_secret=SECRET)
async def greet(payload: dict[str, str]) -> dict[str, str]:
    return {"hello": payload["name"]}


@asynccontextmanager
async def served(fn: JobFunction = greet, *, keep_alive: float | None = None) -> AsyncIterator[Any]:
    """``fn`` served with :func:`config_for`'s settings: yields the port (with a function other
    than ``greet``: the port and the uvicorn server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = config_for(fn, host="127.0.0.1", port=port, log_level="warning")
    if keep_alive is not None:
        config.timeout_keep_alive = keep_alive  # type: ignore[assignment]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT):
            while not server.started:  # uvicorn offers no event for this
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield port if fn is greet else (port, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
        sock.close()


def job_request(job_id: str, body: bytes, *, expect: bool = False) -> tuple[bytes, bytes]:
    """A signed dispatch of ``body``: ``(head, body)``."""
    pairs = protocol.dispatch_headers(
        worker_id="worker-1",
        callback_url="http://127.0.0.1:9/callback",
        job_id=job_id,
        task="greet",
        attempt=1,
        max_attempts=3,
        body=body,
        signer=protocol.Signer([SECRET]),
        timestamp=int(time.time()),
        content_length=True,
    )
    if expect:
        pairs.append(("Expect", "100-continue"))
    lines = ["POST / HTTP/1.1", "Host: fn", *(f"{k}: {v}" for k, v in pairs), "", ""]
    return "\r\n".join(lines).encode(), body


async def read_reply(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers (lower-case names) and the ``Content-Length`` body of one reply."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).decode()
    status, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT)
    return status, headers, body


async def test_job_replies_are_complete_and_the_connection_is_kept_alive() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(3):
            head, body = job_request(str(n), json.dumps({"name": f"n{n}"}).encode())
            writer.write(head + body)
            status, headers, reply = await read_reply(reader)
            assert status == "HTTP/1.1 200 OK"
            assert headers["content-type"] == "application/json"
            assert json.loads(reply) == {"complete": True, "result": {"hello": f"n{n}"}}
        # A tampered body is refused, on the same connection.
        head, _ = job_request("9", b'{"name":"a"}')
        writer.write(head + b'{"name":"b"}')
        status, headers, reply = await read_reply(reader)
        assert status == "HTTP/1.1 401 Unauthorized"
        assert headers["x-job-error"] == "true"
        writer.close()


async def test_expect_100_continue_gets_its_interim_reply_before_the_body_is_sent() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head, body = job_request("1", b'{"name":"slow"}', expect=True)
        writer.write(head)
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        status, _, reply = await read_reply(reader)
        assert status == "HTTP/1.1 200 OK"
        assert json.loads(reply)["result"] == {"hello": "slow"}
        writer.close()


async def test_http_1_0_and_health_routes_get_whole_replies_then_the_close() -> None:
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health/readiness HTTP/1.0\r\nHost: fn\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), WAIT)  # up to the server's close
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert json.loads(body) == {"status": "ready"}
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health/liveness HTTP/1.1\r\nHost: fn\r\n\r\n")
        status, _, body = await read_reply(reader)
        assert status == "HTTP/1.1 200 OK"
        assert json.loads(body) == {"status": "ok"}
        writer.close()


async def test_pipelined_chunked_and_oversized_requests_take_uvicorns_path_and_are_answered() -> (
    None
):
    async with served() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        first = b"".join(job_request("1", b'{"name":"one"}'))
        second = b"".join(job_request("2", b'{"name":"two"}'))
        writer.write(first + second)  # pipelined: the second waits for the first
        for name in ("one", "two"):
            status, _, reply = await read_reply(reader)
            assert status == "HTTP/1.1 200 OK"
            assert json.loads(reply)["result"] == {"hello": name}

        body = b'{"name":"chunked"}'
        head, _ = job_request("3", body)
        head = head.replace(f"Content-Length: {len(body)}\r\n".encode(), b"")
        head = head.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(head + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        status, _, reply = await read_reply(reader)
        assert status == "HTTP/1.1 200 OK"
        assert json.loads(reply)["result"] == {"hello": "chunked"}

        huge = json.dumps({"name": "x" * (greet.max_body_size + 10)}).encode()
        head, _ = job_request("4", huge)
        writer.write(head + huge)
        status, headers, _ = await read_reply(reader)
        assert status == "HTTP/1.1 413 Request Entity Too Large"
        assert headers["x-job-retry"] == "false"
        writer.close()


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with served(keep_alive=0.2) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(3):
            writer.write(b"".join(job_request(str(n), b'{"name":"a"}')))
            status, _, _ = await read_reply(reader)
            assert status == "HTTP/1.1 200 OK"
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # the server hung up
        writer.close()


async def test_shutdown_lets_a_job_in_flight_reply() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @job_function(name="slow", signing_secret=SECRET)
    async def slow(payload: dict[str, str]) -> dict[str, str]:
        started.set()
        await release.wait()
        return {"done": payload["name"]}

    async with served(slow) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head, body = job_request("1", b'{"name":"late"}')
        writer.write(head.replace(b"Task-Identifier: greet", b"Task-Identifier: slow") + body)
        await asyncio.wait_for(started.wait(), WAIT)
        server.should_exit = True
        async with asyncio.timeout(WAIT):
            while any(s.is_serving() for s in server.servers):  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.01)
        release.set()  # the server is shutting down with the job in flight
        status, headers, reply = await read_reply(reader)
        assert status == "HTTP/1.1 200 OK"
        assert headers["connection"] == "close"
        assert json.loads(reply)["result"] == {"done": "late"}
        writer.close()
