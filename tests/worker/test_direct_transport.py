"""In-process dispatch to a ``jobfn`` function without HTTP (:class:`DirectTransport`) gives the
same verdicts, handler context, callbacks and log line as the same function called through its
ASGI interface (:class:`AsgiTransport`), for every way a job can end."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from jobfn import JobContext, PermanentError, job_function
from jobfn.json_logs import JOB_LOGGER
from jobservice.claimed_job import ClaimedJob
from jobservice.direct import DirectTransport
from jobservice.routing import Router
from jobservice.transport import AsgiTransport, Dispatch
from jobservice.verdict import Kind, Verdict

WAIT = 10.0
SECRET = "direct-test-secret-0123456789abcdef0123456789"
seen: list[dict[str, Any]] = []


@job_function(name="d-double", signing_secret=SECRET)
async def double(payload: dict[str, int], ctx: JobContext) -> dict[str, object]:
    seen.append(
        {
            "job_id": ctx.job_id,
            "worker_id": ctx.worker_id,
            "database_id": ctx.database_id,
            "actor_id": ctx.actor_id,
            "task": ctx.task,
            "attempt": ctx.attempt,
            "max_attempts": ctx.max_attempts,
            "callback_url": ctx.callback_url,
            "traceparent": len(ctx.traceparent or ""),
            "last": ctx.is_last_attempt,
        }
    )
    return {"doubled": payload["n"] * 2, "name": "Zoë", "ratio": 0.1}


@job_function(name="d-nothing", signing_secret=SECRET)
async def nothing(payload: dict[str, int]) -> None:
    return None


@job_function(name="d-sync", signing_secret=SECRET)
def sync(payload: dict[str, int]) -> list[int]:
    return [payload["n"]] * 3


@job_function(name="d-permanent", signing_secret=SECRET)
async def permanent(payload: dict[str, int]) -> None:
    raise PermanentError("user 7 does not exist")


@job_function(name="d-crash", signing_secret=SECRET)
async def crash(payload: dict[str, int]) -> None:
    raise RuntimeError("disk full")


@job_function(name="d-own-timeout", timeout=0.05, signing_secret=SECRET)
async def own_timeout(payload: dict[str, int]) -> None:
    await asyncio.Event().wait()


@job_function(name="d-slow", signing_secret=SECRET)
async def slow(payload: dict[str, int]) -> None:
    await asyncio.Event().wait()


@job_function(name="d-small", max_body_size=64, signing_secret=SECRET)
async def small(payload: dict[str, str]) -> None:
    return None


@job_function(name="d-huge", signing_secret=SECRET)
async def huge(payload: dict[str, int]) -> dict[str, str]:
    return {"blob": "x" * payload["n"]}


@job_function(name="d-background", background=True, signing_secret=SECRET)
async def background(payload: dict[str, int], ctx: JobContext) -> dict[str, int]:
    await ctx.progress(50, "half way")
    return {"background": payload["n"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@job_function(name="d-progress", signing_secret=SECRET)
async def reports(payload: dict[str, int], ctx: JobContext) -> None:
    assert await ctx.progress(payload["n"], "working")


@dataclass
class Callbacks:
    """A real HTTP callback endpoint on 127.0.0.1 that records what it receives."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    recorder = Callbacks()

    async def receive(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        recorder.received.append((headers, await request.read()))
        recorder.arrived.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/callback", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    recorder.url = f"http://127.0.0.1:{port}/callback"
    try:
        yield recorder
    finally:
        await runner.cleanup()


def dispatch_to(callbacks: Callbacks) -> Dispatch:
    return Dispatch(
        worker_id="worker-direct",
        callback_url=callbacks.url,
        concurrency=10,
        timeout_for=lambda task: 0.2 if task == "d-slow" else 30.0,
        max_reply_bytes=4096,
    )


def job(task: str, payload: bytes, job_id: int = 7) -> ClaimedJob:
    return ClaimedJob(
        id=job_id,
        task=task,
        payload=payload,
        database_id="5b720132-17d5-424d-9bcb-ee7b17c13d43",
        actor_id="actor-1",
        attempts=2,
        max_attempts=2,
    )


async def both(dispatch: Dispatch, fn: Any, claimed: ClaimedJob) -> tuple[Verdict, Verdict]:
    """The verdicts of the direct and the ASGI transport on the same job."""
    direct = DirectTransport(f"tests:{fn.__name__}", fn, dispatch)
    asgi = AsgiTransport(f"tests:{fn.__name__}", fn.asgi, dispatch)
    return await direct.run(claimed), await asgi.run(claimed)


CASES = [
    (double, b'{"n": 21}', Kind.COMPLETED),
    (nothing, b'{"n": 1}', Kind.COMPLETED),
    (sync, b'{"n": 4}', Kind.COMPLETED),
    (permanent, b'{"n": 1}', Kind.FAILED),
    (crash, b'{"n": 1}', Kind.RETRY),
    (own_timeout, b'{"n": 1}', Kind.RETRY),
    (slow, b'{"n": 1}', Kind.RETRY),
    (double, b'{"n": "twenty"}', Kind.FAILED),
    (double, b"not json", Kind.FAILED),
    (small, b'{"text": "' + b"y" * 100 + b'"}', Kind.FAILED),
    (huge, b'{"n": 100}', Kind.COMPLETED),
    (huge, b'{"n": 10000}', Kind.RETRY),
]


@pytest.mark.parametrize(("fn", "payload", "kind"), CASES)
async def test_direct_and_asgi_dispatch_give_the_same_verdict(
    callbacks: Callbacks, fn: Any, payload: bytes, kind: Kind
) -> None:
    fn.start()
    direct, asgi = await both(dispatch_to(callbacks), fn, job(fn.name, payload))

    assert direct == asgi
    assert direct.kind is kind
    assert not direct.unreachable


async def test_the_verdicts_carry_what_a_user_reads(callbacks: Callbacks) -> None:
    dispatch = dispatch_to(callbacks)
    for fn in (double, slow, huge, crash):
        fn.start()
    ok, _ = await both(dispatch, double, job("d-double", b'{"n": 21}'))
    assert ok.result is not None
    assert json.loads(ok.result) == {"doubled": 42, "name": "Zoë", "ratio": 0.1}
    timed_out, _ = await both(dispatch, slow, job("d-slow", b"{}"))
    assert timed_out.message == "timed out after 0.2 s in tests:slow"
    too_big, _ = await both(dispatch, huge, job("d-huge", b'{"n": 10000}'))
    assert too_big.message is not None
    assert "larger than 4096 bytes (JOBS_MAX_REPLY_BYTES)" in too_big.message
    assert "in-process function tests:huge" in too_big.message
    crashed, _ = await both(dispatch, crash, job("d-crash", b"{}"))
    assert crashed.message == "HTTP 500 Internal Server Error: disk full"


async def test_the_handler_sees_the_same_job_either_way(callbacks: Callbacks) -> None:
    double.start()
    seen.clear()
    await both(dispatch_to(callbacks), double, job("d-double", b'{"n": 1}'))

    direct, asgi = seen
    assert direct == asgi
    assert direct == {
        "job_id": "7",
        "worker_id": "worker-direct",
        "database_id": "5b720132-17d5-424d-9bcb-ee7b17c13d43",
        "actor_id": "actor-1",
        "task": "d-double",
        "attempt": 2,
        "max_attempts": 2,
        "callback_url": callbacks.url,
        "traceparent": 55,
        "last": True,
    }


async def test_background_jobs_report_through_signed_callbacks_either_way(
    callbacks: Callbacks,
) -> None:
    background.start()
    direct, asgi = await both(
        dispatch_to(callbacks), background, job("d-background", b'{"n": 5}', job_id=9)
    )
    assert direct.kind is Kind.CALLBACK
    assert asgi == direct
    await callbacks.wait_for(4)  # a progress report and the outcome, for each of the two
    bodies = sorted(body for _, body in callbacks.received)
    assert bodies[0] == bodies[1]
    assert bodies[2] == bodies[3]
    outcomes = [json.loads(body) for body in bodies]
    assert {"status": "success", "result": {"background": 5}} in outcomes
    for headers, _ in callbacks.received:
        assert headers["x-job-id"] == "9"
        assert headers["x-worker-id"] == "worker-direct"
        assert headers["x-job-attempt"] == "2"
        assert "v2=" in headers["x-job-signature"]


async def test_each_job_logs_the_same_line_either_way(
    callbacks: Callbacks, caplog: pytest.LogCaptureFixture
) -> None:
    crash.start()
    with caplog.at_level(logging.INFO, logger=JOB_LOGGER):
        await both(dispatch_to(callbacks), crash, job("d-crash", b"{}"))
    records = [r for r in caplog.records if r.name == JOB_LOGGER]
    assert len(records) == 2

    def fields(record: logging.LogRecord) -> dict[str, object]:
        keys = ("job_id", "task", "worker_id", "attempt", "outcome", "status", "error")
        return {key: getattr(record, key, None) for key in keys}

    assert fields(records[0]) == fields(records[1])
    assert fields(records[0])["error"] == "disk full"
    assert records[0].getMessage() == records[1].getMessage() == "job 7 d-crash: error"
    assert records[0].exc_info is not None


async def test_the_worker_cancels_a_direct_job_at_shutdown(callbacks: Callbacks) -> None:
    slow.start()
    transport = DirectTransport("tests:slow", slow, dispatch_to(callbacks))
    running = transport.start(job("d-other", b"{}"))
    await asyncio.sleep(0)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_jobfn_functions_are_routed_to_the_direct_transport(callbacks: Callbacks) -> None:
    async def plain_app(scope: object, receive: object, send: object) -> None:
        return None

    router = Router(
        dispatch=dispatch_to(callbacks),
        gateway_map={},
        template=None,
        base_url="http://gw",
        inprocess={"a": ("tests:double", double.asgi), "b": ("tests:plain", plain_app)},
    )
    direct = router.route("a")
    assert isinstance(direct, DirectTransport)
    assert (direct.target, direct.function, direct.breaker_key) == ("tests:double", double, None)
    assert isinstance(router.route("b"), AsgiTransport)


async def test_progress_reports_of_a_direct_job_reach_the_callback_url(
    callbacks: Callbacks,
) -> None:
    reports.start()
    direct, asgi = await both(dispatch_to(callbacks), reports, job("d-progress", b'{"n": 30}'))
    assert direct == asgi
    assert direct.kind is Kind.COMPLETED
    await callbacks.wait_for(2)
    (first_headers, first), (second_headers, second) = callbacks.received
    assert first == second
    assert json.loads(first) == {"status": "progress", "progress": 30, "message": "working"}
    for headers in (first_headers, second_headers):
        assert (headers["x-job-id"], headers["x-job-attempt"]) == ("7", "2")
