"""The worker's HTTP dispatch over its lean client, against real sockets on 127.0.0.1: a
scripted server answers with exact bytes, so each rule of a reply (framing, compression,
keep-alive, size limit, timeouts, disconnections) is checked as the worker sees it."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from jobfn import protocol
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch, HttpTransport
from jobservice.verdict import Kind, Verdict

SECRET = "http-client-test-secret-0123456789abcdef"
Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Scripted:
    """A server that reads each request (head and ``Content-Length`` body) and lets ``answer``
    write the raw reply; it records requests and counts connections."""

    answer: Answer
    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await self.answer(request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def scripted(answer: Answer) -> AsyncIterator[Scripted]:
    server = Scripted(answer)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()


def reply(status: int, body: bytes, *headers: str) -> Answer:
    """An answer: ``status``, ``headers`` and ``body`` with its ``Content-Length``."""

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        head = [f"HTTP/1.1 {status} X", *headers, f"Content-Length: {len(body)}", "", ""]
        writer.write("\r\n".join(head).encode() + body)
        await writer.drain()

    return answer


@asynccontextmanager
async def transport_to(
    url: str, *, limit: int = 1024 * 1024, seconds: float = 5.0
) -> AsyncIterator[HttpTransport]:
    dispatch = Dispatch(
        worker_id="worker-1",
        callback_url="http://127.0.0.1:9/callback",
        concurrency=4,
        timeout_for=lambda task: seconds,
        signing_secret=SECRET,
        max_reply_bytes=limit,
    )
    await dispatch.start()
    try:
        yield HttpTransport(url, dispatch)
    finally:
        await dispatch.close()


def job(job_id: int = 7, **changes: object) -> ClaimedJob:
    fields: dict[str, object] = {
        "id": job_id,
        "task": "send-email",
        "payload": b'{"to":"a@b.c"}',
        "database_id": "5b720132-17d5-424d-9bcb-ee7b17c13d43",
        "actor_id": None,
        "attempts": 2,
        "max_attempts": 5,
    }
    fields.update(changes)
    return ClaimedJob(**fields)  # type: ignore[arg-type]


async def test_the_request_carries_the_signed_dispatch_headers_and_the_body() -> None:
    async with (
        scripted(reply(200, b'{"complete":true,"result":{"sent":1}}')) as server,
        transport_to(f"http://127.0.0.1:{server.port}/fn/send-email?x=1") as transport,
    ):
        verdict = await transport.run(job(actor_id="actor-9"))
    assert verdict.kind is Kind.COMPLETED
    assert verdict.result == '{"sent":1}'
    (request,) = server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /fn/send-email?x=1 HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{server.port}"
    headers = [
        (name.lower().encode(), value.encode())
        for name, _, value in (line.partition(": ") for line in lines[2:])
    ]
    assert body == b'{"to":"a@b.c"}'
    parsed = protocol.parse_job_headers(headers)
    assert (parsed.worker_id, parsed.job_id, parsed.task, parsed.attempt) == (
        "worker-1",
        "7",
        "send-email",
        2,
    )
    assert (parsed.actor_id, parsed.max_attempts, parsed.completion_reply) == ("actor-9", 5, True)
    assert parsed.content_length == len(body)
    # The function's check: the signature covers this body and these headers.
    now = time.time()
    assert protocol.verify(
        SECRET, parsed.signature, protocol.dispatch_envelope(parsed, body), now=now
    )
    tampered = protocol.dispatch_envelope(parsed, b'{"to":"evil"}')
    assert not protocol.verify(SECRET, parsed.signature, tampered, now=now)


async def test_keep_alive_reuses_one_connection_and_connection_close_does_not() -> None:
    async with (
        scripted(reply(200, b'{"complete":true}')) as server,
        transport_to(f"http://127.0.0.1:{server.port}/") as transport,
    ):
        for n in range(5):
            assert (await transport.run(job(n))).kind is Kind.COMPLETED
        assert server.connections == 1
    async with (
        scripted(reply(200, b'{"complete":true}', "Connection: close")) as closing,
        transport_to(f"http://127.0.0.1:{closing.port}/") as transport,
    ):
        for n in range(3):
            assert (await transport.run(job(n))).kind is Kind.COMPLETED
        assert closing.connections == 3


async def test_many_jobs_at_once_each_get_their_own_reply() -> None:
    async def echo_id(request: bytes, writer: asyncio.StreamWriter) -> None:
        job_id = next(
            line.split(b": ")[1] for line in request.split(b"\r\n") if line.startswith(b"X-Job-Id")
        )
        await reply(200, b'{"complete":true,"result":' + job_id + b"}")(request, writer)

    async with (
        scripted(echo_id) as server,
        transport_to(f"http://127.0.0.1:{server.port}/") as transport,
    ):
        verdicts = await asyncio.gather(*(transport.run(job(n)) for n in range(40)))
    assert [v.result for v in verdicts] == [str(n) for n in range(40)]


async def test_chunked_gzip_deflate_and_until_close_bodies_are_read_whole() -> None:
    document = json.dumps({"complete": True, "result": {"text": "x" * 5000}}).encode()

    async def chunked(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(document), 1000):
            piece = document[start : start + 1000]
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")

    async def until_close(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + document)
        await writer.drain()
        writer.close()

    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    answers = {
        "chunked": chunked,
        "gzip": reply(200, gzip.compress(document), "Content-Encoding: gzip"),
        "deflate": reply(200, zlib.compress(document), "Content-Encoding: deflate"),
        "raw deflate": reply(
            200, raw.compress(document) + raw.flush(), "Content-Encoding: deflate"
        ),
        "until close": until_close,
    }
    for name, answer in answers.items():
        async with (
            scripted(answer) as server,
            transport_to(f"http://127.0.0.1:{server.port}/") as transport,
        ):
            verdict = await transport.run(job())
        assert verdict.kind is Kind.COMPLETED, name
        assert verdict.result == json.dumps({"text": "x" * 5000}, separators=(",", ":")), name


async def test_replies_over_the_limit_fail_without_being_read_and_the_connection_is_dropped() -> (
    None
):
    big = b'{"complete":true,"result":"' + b"y" * 5000 + b'"}'
    answers = {
        "declared": reply(200, big),
        "gzip": reply(200, gzip.compress(big), "Content-Encoding: gzip"),
    }
    for name, answer in answers.items():
        async with (
            scripted(answer) as server,
            transport_to(f"http://127.0.0.1:{server.port}/", limit=1000) as transport,
        ):
            verdict = await transport.run(job())
            assert verdict.kind is Kind.RETRY, name
            assert verdict.message is not None
            assert "larger than 1000 bytes (JOBS_MAX_REPLY_BYTES)" in verdict.message, name
            assert (await transport.run(job())).kind is Kind.RETRY
            assert server.connections == 2, name  # the first one was not reused


async def test_a_refused_connection_is_unreachable_and_a_drop_mid_reply_is_not() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with transport_to(f"http://127.0.0.1:{port}/x") as transport:
        refused = await transport.run(job())
    assert refused.unreachable
    assert refused.message is not None
    assert refused.message.startswith(f"request to http://127.0.0.1:{port}/x failed: ")

    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        writer.close()

    async with (
        scripted(hang_up) as server,
        transport_to(f"http://127.0.0.1:{server.port}/") as transport,
    ):
        dropped = await transport.run(job())
    assert dropped.kind is Kind.RETRY
    assert not dropped.unreachable
    assert dropped.message is not None
    assert "server disconnected" in dropped.message


async def test_a_reply_that_never_comes_times_out_and_the_next_job_gets_a_new_connection() -> None:
    answered: list[int] = []

    async def first_hangs(request: bytes, writer: asyncio.StreamWriter) -> None:
        answered.append(1)
        if len(answered) == 1:
            await asyncio.Event().wait()  # never answers this one
        await reply(200, b'{"complete":true}')(request, writer)

    async with (
        scripted(first_hangs) as server,
        transport_to(f"http://127.0.0.1:{server.port}/", seconds=0.2) as transport,
    ):
        slow = await transport.run(job())
        assert slow.message == f"timed out after 0.2 s waiting for http://127.0.0.1:{server.port}/"
        assert (await transport.run(job())).kind is Kind.COMPLETED
        assert server.connections == 2


async def test_gateway_statuses_are_unreachable_and_function_errors_are_not() -> None:
    cases: dict[str, tuple[Answer, bool]] = {
        "gateway page": (reply(503, b"<html>no</html>", "Content-Type: text/html"), True),
        "function error": (
            reply(500, b'{"error":"boom","retry":false}', "X-Job-Error: true"),
            False,
        ),
    }
    got: dict[str, Verdict] = {}
    for name, (answer, _) in cases.items():
        async with (
            scripted(answer) as server,
            transport_to(f"http://127.0.0.1:{server.port}/") as transport,
        ):
            got[name] = await transport.run(job())
    assert got["gateway page"].unreachable
    assert got["gateway page"].kind is Kind.RETRY
    assert not got["function error"].unreachable
    assert got["function error"].kind is Kind.FAILED
    assert got["function error"].message == "HTTP 500 Internal Server Error: boom"


async def test_a_header_value_with_a_line_break_fails_the_job_without_sending_it() -> None:
    async with (
        scripted(reply(200, b'{"complete":true}')) as server,
        transport_to(f"http://127.0.0.1:{server.port}/") as transport,
    ):
        verdict = await transport.run(job(actor_id="a\r\nX-Injected: 1"))
    assert verdict.kind is Kind.FAILED
    assert server.requests == []
