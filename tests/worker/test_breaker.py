"""The per-route breaker (pure) and the worker's use of it against a real refused port."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import pytest
from aiohttp import web

from jobservice.breaker import Breakers, route_key
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch, HttpTransport

if TYPE_CHECKING:
    from tests.worker.conftest import FunctionServer, JobsDb, Tools


def test_route_key_is_the_origin() -> None:
    assert route_key("http://fns.svc:8080/simple-email") == "http://fns.svc:8080"
    assert route_key("https://a.example/x?y=1") == "https://a.example"


def test_breaker_opens_doubles_caps_and_closes() -> None:
    breakers = Breakers(base=1.0, cap=5.0, jitter=lambda: 1.0)
    key = "http://fn:8080"
    first = breakers.unreachable(key, "a", now=0.0)
    assert first is not None
    assert (first.seconds, first.failures) == (1.0, 1)
    assert breakers.is_open(key, 0.5)
    assert breakers.blocked_tasks() == {"a"}
    assert breakers.probe_due(0.5) == {}
    # A request sent before it opened does not extend it, but its task is held back too.
    assert breakers.unreachable(key, "b", now=0.6) is None
    assert breakers.blocked_tasks() == {"a", "b"}
    # Half-open after the delay: its tasks stay out of claims but one probe is due.
    assert not breakers.is_open(key, 1.0)
    assert breakers.blocked_tasks() == {"a", "b"}
    assert breakers.probe_due(1.0) == {key: {"a", "b"}}
    breakers.probing(key)
    assert breakers.probe_due(1.0) == {}
    breakers.probe_lost(key)
    assert breakers.probe_due(1.0) == {key: {"a", "b"}}
    # Each unreachable probe doubles the delay, up to the cap.
    delays = []
    now = 1.0
    for _ in range(4):
        opened = breakers.unreachable(key, "a", now=now)
        assert opened is not None
        delays.append(opened.seconds)
        now += opened.seconds
    assert delays == [2.0, 4.0, 5.0, 5.0]
    assert breakers.open_keys() == [key]
    # A reply from the function closes it.
    assert breakers.reached(key) is True
    assert breakers.reached(key) is False
    assert not breakers.is_open(key, now)
    assert breakers.blocked_tasks() == set()
    assert breakers.probe_due(now) == {}
    assert breakers.open_keys() == []
    reopened = breakers.unreachable(key, "a", now=now)
    assert reopened is not None
    assert reopened.seconds == 1.0


def test_jitter_shortens_the_delay_by_at_most_half() -> None:
    low = Breakers(base=4.0, cap=30.0, jitter=lambda: 0.0).unreachable("k", "t", now=0.0)
    assert low is not None
    assert low.seconds == 2.0


def test_other_routes_are_unaffected() -> None:
    breakers = Breakers(base=1.0, jitter=lambda: 1.0)
    breakers.unreachable("http://down:1", "a", now=0.0)
    assert not breakers.is_open("http://up:2", 0.1)
    assert breakers.remaining("http://up:2", 0.1) == 0.0


def _refusing_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _dispatch_marks_refused_unreachable(url: str) -> bool:
    dispatch = Dispatch(
        worker_id="probe-worker",
        callback_url="http://127.0.0.1:1/cb",
        concurrency=1,
        timeout_for=lambda task: 5.0,
    )
    await dispatch.start()
    try:
        job = ClaimedJob(1, "down", b"{}", None, None, 1, 1)
        return (await HttpTransport(url, dispatch).run(job)).unreachable
    finally:
        await dispatch.close()


async def test_an_unreachable_route_uses_no_attempt_and_other_routes_keep_running(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    """A real refused port: its jobs keep their attempts while the other function's jobs
    complete; when a function listens on that port, a probe closes the breaker and they run."""
    down = _refusing_url()
    if not await _dispatch_marks_refused_unreachable(f"{down}/down"):
        pytest.skip("HttpTransport does not mark a refused connection unreachable")
    settings = tools.settings(
        INTERNAL_GATEWAY_DEVELOPMENT_MAP=json.dumps({"down": f"{down}/down"}),
        JOBS_ROUTE_BACKOFF_MIN="0.2",
        JOBS_ROUTE_BACKOFF_MAX="0.5",
    )
    down_ids = [await jobs_db.add("down", max_attempts=1) for _ in range(5)]
    up_ids = [await jobs_db.add("up") for _ in range(5)]
    async with tools.running_service(settings) as service:
        worker = service.worker
        assert worker is not None
        for job_id in up_ids:
            assert (await jobs_db.finished(job_id))["status"] == "completed"

        async def opened() -> bool:
            return bool(worker.breakers.open_keys())

        await tools.eventually(opened, what="the breaker of the refused route to open")
        rendered = service.metrics.render().decode()
        assert f'jobs_route_breaker_open{{route="{down}"}} 1.0' in rendered
        assert 'jobs_unreachable_total{task="down"}' in rendered
        # max_attempts=1: an attempt counted for a refused connection would fail them.
        assert (
            await jobs_db.count("SELECT count(*) FROM app_jobs.job_history WHERE status = 'failed'")
            == 0
        )

        # The function comes up on that port: the breaker closes, the jobs run once each.
        app = web.Application()
        app.router.add_post("/down", _ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = int(down.rsplit(":", 1)[1])
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            for job_id in down_ids:
                done = await jobs_db.finished(job_id)
                assert (done["status"], done["attempts"]) == ("completed", 1)
            assert worker.breakers.open_keys() == []
            rendered = service.metrics.render().decode()
            assert f'jobs_route_breaker_open{{route="{down}"}} 0.0' in rendered
        finally:
            await runner.cleanup()


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.json_response({"complete": True})
