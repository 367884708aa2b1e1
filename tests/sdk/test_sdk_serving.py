"""A job function served by a real uvicorn on 127.0.0.1, called back to a real callback server."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from jobfn import CallbackPolicy, JobContext, PermanentError, job_function

if TYPE_CHECKING:
    from tests.sdk.conftest import CallbackServer, Serve

FAST_RETRIES = CallbackPolicy(timeout=5.0, attempts=4, backoff=0.01, max_backoff=0.05)


class Order(BaseModel):
    order_id: int
    amount: float


@job_function(name="charge", callback=FAST_RETRIES)
async def charge(payload: Order, ctx: JobContext) -> dict[str, object]:
    """Charge an order."""
    if payload.amount < 0:
        raise PermanentError("negative amount")
    if payload.amount == 0:
        raise RuntimeError("payment provider unavailable")
    return {"charged": payload.amount, "order": payload.order_id}


def job_headers(callback_url: str, job_id: str = "11", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Worker-Id": "worker-test-1",
        "X-Job-Id": job_id,
        "X-Database-Id": "5b720132-17d5-424d-9bcb-ee7b17c13d43",
        "X-Callback-Url": callback_url,
        **extra,
    }


async def test_replies_over_http(callback_server: CallbackServer, serve_app: Serve) -> None:
    async with serve_app(charge) as served, httpx.AsyncClient(base_url=served.url) as http:
        reply_mode = job_headers(callback_server.url, **{"X-Job-Completion": "reply"})
        ok = await http.post("/", json={"order_id": 1, "amount": 9.5}, headers=reply_mode)
        assert ok.status_code == 200
        assert ok.json() == {"complete": True, "result": {"charged": 9.5, "order": 1}}

        invalid = await http.post("/", json={"order_id": "x"}, headers=reply_mode)
        assert invalid.status_code == 422
        assert invalid.headers["x-job-retry"] == "false"
        assert {e["loc"][0] for e in invalid.json()["errors"]} == {"order_id", "amount"}

        permanent = await http.post("/", json={"order_id": 1, "amount": -1}, headers=reply_mode)
        assert permanent.status_code == 400
        assert permanent.json() == {"error": "negative amount", "retry": False}

        failed = await http.post("/", json={"order_id": 1, "amount": 0}, headers=reply_mode)
        assert failed.status_code == 500
        assert failed.headers["x-job-error"] == "true"
        assert failed.json() == {"error": "payment provider unavailable"}

        bad = await http.post("/", content=b"\xff\x00 not json", headers=reply_mode)
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("request body is not valid JSON")

        huge = await http.post("/", content=b"[" + b"1," * 600_000 + b"1]", headers=reply_mode)
        assert huge.status_code == 413
        assert huge.json() == {"error": "request body is larger than 1048576 bytes", "retry": False}

        direct = await http.post("/", json={"order_id": 2, "amount": 1})
        assert direct.status_code == 200

        # The server is still healthy after all of that.
        assert (await http.get("/health/liveness")).json() == {"status": "ok"}
    assert callback_server.received == []  # reply completion and direct calls: no callbacks


async def test_health_and_openapi(serve_app: Serve) -> None:
    async with serve_app(charge) as served, httpx.AsyncClient(base_url=served.url) as http:
        assert (await http.get("/health/liveness")).status_code == 200
        assert (await http.get("/health/readiness")).json() == {"status": "ready"}
        doc = (await http.get("/openapi.json")).json()
        operation = doc["paths"]["/"]["post"]
        assert operation["operationId"] == "charge"
        assert operation["description"] == "Charge an order."
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        order = doc["components"]["schemas"]["Order"] if "$ref" in schema else schema
        assert order["required"] == ["order_id", "amount"]
        assert set(operation["responses"]) >= {"200", "422", "500"}
        assert (await http.get("/nowhere")).status_code == 404


async def test_callback_is_retried_until_the_server_takes_it(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    callback_server.fail_first = 2
    async with serve_app(charge) as served, httpx.AsyncClient(base_url=served.url) as http:
        reply = await http.post(
            "/", json={"order_id": 5, "amount": 3}, headers=job_headers(callback_server.url + "/")
        )
        assert reply.status_code == 200
        received = await callback_server.wait_for(3)
    assert [r.path for r in received] == ["/callback"] * 3
    assert {r.body for r in received} == {received[0].body}
    assert received[0].json == {"status": "success", "result": {"charged": 3.0, "order": 5}}
    assert len(callback_server.received) == 3  # once accepted, never sent again


async def test_callback_gives_up_after_the_bounded_attempts(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    callback_server.fail_first = 100
    async with serve_app(charge) as served, httpx.AsyncClient(base_url=served.url) as http:
        reply = await http.post(
            "/", json={"order_id": 5, "amount": 0}, headers=job_headers(callback_server.url)
        )
        assert reply.status_code == 500
        await callback_server.wait_for(FAST_RETRIES.attempts)
    # The server shut down after the function's last try: no more were sent.
    assert len(callback_server.received) == FAST_RETRIES.attempts
    assert callback_server.received[0].headers["x-job-error"] == "true"


async def test_a_conflict_answer_is_not_retried(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    callback_server.fail_first, callback_server.fail_status = 1, 409
    async with serve_app(charge) as served, httpx.AsyncClient(base_url=served.url) as http:
        await http.post(
            "/", json={"order_id": 5, "amount": 3}, headers=job_headers(callback_server.url)
        )
        await callback_server.wait_for(1)
    assert len(callback_server.received) == 1


async def test_background_mode_answers_at_once_then_reports(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    release = asyncio.Event()

    @job_function(name="export", background=True, callback=FAST_RETRIES)
    async def export(payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        await ctx.progress(10, "started")
        await release.wait()
        await ctx.progress(90, "almost")
        return {"rows": payload["rows"]}

    async with serve_app(export) as served, httpx.AsyncClient(base_url=served.url) as http:
        headers = job_headers(callback_server.url, **{"X-Job-Completion": "reply"})
        reply = await http.post("/", json={"rows": 12}, headers=headers)
        # The reply came while the handler is still blocked.
        assert reply.status_code == 202
        assert not release.is_set()
        await callback_server.wait_for(1)
        release.set()
        await callback_server.wait_for(3)
    bodies = [r.json for r in callback_server.received]
    assert bodies == [
        {"status": "progress", "progress": 10, "message": "started"},
        {"status": "progress", "progress": 90, "message": "almost"},
        {"status": "success", "result": {"rows": 12}},
    ]
    assert all(r.headers["x-job-id"] == "11" for r in callback_server.received)


async def test_shutdown_finishes_background_jobs(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @job_function(background=True, callback=FAST_RETRIES)
    async def slow(payload: dict[str, Any]) -> str:
        started.set()
        await release.wait()
        return "finished"

    async with serve_app(slow) as served, httpx.AsyncClient(base_url=served.url) as http:
        reply = await http.post("/", json={}, headers=job_headers(callback_server.url))
        assert reply.status_code == 202
        await asyncio.wait_for(started.wait(), 10)
        stopping = asyncio.create_task(served.stop())
        async with asyncio.timeout(10):
            # No event marks the start of the drain; readiness turns false when it begins.
            while slow.ready:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert not stopping.done()  # still draining: the job is in flight
        release.set()
        await stopping
    [callback] = callback_server.received
    assert callback.json == {"status": "success", "result": "finished"}


async def test_shutdown_drain_is_bounded(callback_server: CallbackServer, serve_app: Serve) -> None:
    @job_function(background=True, shutdown_timeout=0.2, callback=FAST_RETRIES)
    async def stuck(payload: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    async with serve_app(stuck) as served, httpx.AsyncClient(base_url=served.url) as http:
        reply = await http.post("/", json={}, headers=job_headers(callback_server.url))
        assert reply.status_code == 202
        await served.stop()
    [callback] = callback_server.received
    assert callback.headers["x-job-error"] == "true"
    assert callback.json == {
        "status": "error",
        "error": "the function shut down before the job finished",
    }


async def test_signed_callbacks_and_refused_unsigned_requests(
    callback_server: CallbackServer, serve_app: Serve
) -> None:
    import time

    from jobfn import protocol

    secret = "k3y-" + "0" * 32

    @job_function(signing_secret=secret, callback=FAST_RETRIES)
    def signed(payload: dict[str, Any]) -> str:
        return "ok"

    body = json.dumps({"n": 1}).encode()
    async with serve_app(signed) as served, httpx.AsyncClient(base_url=served.url) as http:
        unsigned = await http.post("/", content=body, headers=job_headers(callback_server.url))
        assert unsigned.status_code == 401
        headers = job_headers(callback_server.url, **{"X-Job-Attempt": "2"})
        dispatch = protocol.Envelope(
            "dispatch",
            headers["X-Worker-Id"],
            "11",
            "2",
            headers["X-Database-Id"],
            callback_server.url,
            "",
            body,
        )
        headers["X-Job-Signature"] = protocol.sign(secret, dispatch, int(time.time()))
        ok = await http.post("/", content=body, headers=headers)
        assert ok.status_code == 200
        [callback] = await callback_server.wait_for(1)
    assert callback.path == "/callback"
    assert callback.headers["x-job-attempt"] == "2"
    envelope = protocol.Envelope(
        "callback",
        headers["X-Worker-Id"],
        "11",
        "2",
        headers["X-Database-Id"],
        callback_server.url + "/callback",
        "",
        callback.body,
    )
    assert protocol.verify(secret, callback.headers["x-job-signature"], envelope, now=time.time())


def test_plain_uvicorn_sees_an_asgi3_app() -> None:
    import uvicorn

    config = uvicorn.Config(charge, lifespan="on")
    config.load()
    assert config.interface == "asgi3"
