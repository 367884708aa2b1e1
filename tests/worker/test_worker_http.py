"""The worker against real HTTP functions: headers, every reply of the reply table,
timeouts, connection errors, 202 + callback, callback deadlines."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from jobfn import protocol

if TYPE_CHECKING:
    from tests.worker.conftest import Delivery, FunctionServer, JobsDb, Tools


async def test_headers_and_completion_with_result(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    fn_server.reply("echo", 200, {"complete": True, "result": {"sent": 3}})
    settings = tools.settings()
    async with tools.running_service(settings):
        job_id = await jobs_db.add("echo", {"a": 1})
        done = await jobs_db.finished(job_id)
    assert done["status"] == "completed"
    assert done["result"] == {"sent": 3}
    assert done["worker_id"] == "test-worker-1"
    assert done["attempts"] == 1

    (delivery,) = fn_server.of("echo")
    h = delivery.headers
    assert json.loads(delivery.body) == {"a": 1}
    assert h["content-type"] == "application/json"
    assert h["x-worker-id"] == "test-worker-1"
    assert h["x-job-id"] == str(job_id)
    assert h["x-database-id"] == jobs_db.DB_ID
    assert h["x-callback-url"] == settings.callback_url
    assert h["x-task-identifier"] == "echo"
    assert h["x-job-attempt"] == "1"
    assert h["x-job-max-attempts"] == "25"
    assert h["x-job-completion"] == "reply"
    version, trace_id, span_id, flags = h["traceparent"].split("-")
    assert (version, len(trace_id), len(span_id), flags) == ("00", 32, 16, "01")
    envelope = protocol.Envelope(
        "dispatch",
        "test-worker-1",
        str(job_id),
        "1",
        jobs_db.DB_ID,
        settings.callback_url,
        "",
        delivery.body,
    )
    secret = settings.signing_secret
    assert secret is not None
    assert protocol.verify(secret, h["x-job-signature"], envelope, now=time.time())
    assert "x-actor-id" not in h


async def test_error_replies_are_stored_with_the_functions_message(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    fn_server.reply("boom", 500, {"error": "database exploded"})
    fn_server.reply("ref-error", 200, {"message": "deliberate failure"}, {"X-Job-Error": "TRUE"})
    fn_server.reply("text-503", 503, b"upstream is down", {"Content-Type": "text/plain"})
    fn_server.reply("perm-header", 400, {"error": "no such user"}, {"X-Job-Retry": "false"})
    fn_server.reply("perm-body", 403, {"error": "bad payload", "retry": False})
    fn_server.reply("one-try", 500, {"error": "still broken"})
    async with tools.running_service(tools.settings()):
        boom = await jobs_db.add("boom")
        ref = await jobs_db.add("ref-error")
        text = await jobs_db.add("text-503")
        perm_h = await jobs_db.add("perm-header")
        perm_b = await jobs_db.add("perm-body")
        last = await jobs_db.add("one-try", max_attempts=1)

        row = await jobs_db.retried(boom)
        assert row["last_error"] == "HTTP 500 Internal Server Error: database exploded"
        assert row["attempts"] == 1
        assert row["run_at"] > row["created_at"]  # backoff before the next attempt
        assert (await jobs_db.retried(ref))["last_error"] == "deliberate failure"
        assert (await jobs_db.retried(text))["last_error"] == (
            "HTTP 503 Service Unavailable: upstream is down"
        )
        for job_id, message in [
            (perm_h, "HTTP 400 Bad Request: no such user"),
            (perm_b, "HTTP 403 Forbidden: bad payload"),
            (last, "HTTP 500 Internal Server Error: still broken"),
        ]:
            dead = await jobs_db.finished(job_id)
            assert dead["status"] == "failed"
            assert dead["last_error"] == message
            assert await jobs_db.job(job_id) is None


async def test_timeouts_and_connection_errors_name_the_cause(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    never = asyncio.Event()

    async def hang(delivery: Delivery) -> web.StreamResponse:
        await never.wait()
        return web.Response()

    fn_server.handlers["hang"] = hang
    dead_port = tools.free_port()
    settings = tools.settings(
        JOBS_TASK_TIMEOUT='{"hang": 0.3}',
        INTERNAL_GATEWAY_DEVELOPMENT_MAP=json.dumps({"refused": f"http://127.0.0.1:{dead_port}/x"}),
    )
    async with tools.running_service(settings):
        slow = await jobs_db.add("hang")
        refused = await jobs_db.add("refused")
        row = await jobs_db.retried(slow)
        assert row["last_error"] == f"timed out after 0.3 s waiting for {fn_server.url}/hang"
        row = await jobs_db.retried(refused)
        assert row["last_error"].startswith(f"request to http://127.0.0.1:{dead_port}/x failed: ")
        assert "Connect" in row["last_error"]
    never.set()


async def test_202_waits_for_the_callback_then_completes(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    fn_server.reply("later", 202, {"accepted": True})
    settings = tools.settings()
    assert settings.signing_secret is not None
    async with tools.running_service(settings):
        job_id = await jobs_db.add("later")

        async def deadline_set() -> Any:
            row = await jobs_db.job(job_id)
            return row and row["locked_until"]

        await tools.eventually(deadline_set, what="the callback deadline")
        row = await jobs_db.job(job_id)
        assert row is not None
        assert row["locked_by"] == "test-worker-1"
        (delivery,) = fn_server.of("later")
        body = json.dumps({"status": "success", "result": {"done": 1}}).encode()
        url = delivery.headers["x-callback-url"]
        envelope = protocol.Envelope(
            "callback", "test-worker-1", str(job_id), "1", jobs_db.DB_ID, url, "", body
        )
        async with aiohttp.ClientSession() as http:
            reply = await http.post(
                url,
                data=body,
                headers={
                    "X-Worker-Id": "test-worker-1",
                    "X-Job-Id": str(job_id),
                    "X-Job-Attempt": "1",
                    "X-Database-Id": jobs_db.DB_ID,
                    "X-Job-Signature": protocol.sign(
                        settings.signing_secret, envelope, int(time.time())
                    ),
                },
            )
            assert reply.status == 200
        done = await jobs_db.finished(job_id)
    assert done["status"] == "completed"
    assert done["result"] == {"done": 1}


async def test_202_without_callback_is_retried_after_the_deadline(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    fn_server.reply("forgotten", 202)
    async with tools.running_service(tools.settings(JOBS_CALLBACK_DEADLINE="0.3")):
        job_id = await jobs_db.add("forgotten")
        row = await jobs_db.retried(job_id)
    assert row["last_error"] == "no callback before the deadline"
    assert row["locked_until"] is None


async def test_a_reply_that_is_not_json_is_a_retry_and_odd_json_completes(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    # Python's JSON reader accepts NaN; it is not JSON (PostgreSQL's json type refuses it).
    fn_server.reply("nan", 200, b'{"ratio": NaN}', {"Content-Type": "application/json"})
    fn_server.reply("nul", 200, b'{"text": "a\\u0000b"}', {"Content-Type": "application/json"})
    fn_server.reply("fine", 200, {"ok": True})
    async with tools.running_service(tools.settings(JOBS_SETTLE_DELAY_MS="50")):
        odd = await jobs_db.add("nan")
        nul = await jobs_db.add("nul")
        fine = await jobs_db.add("fine")
        retried = await jobs_db.retried(odd)
        assert (await jobs_db.finished(fine))["status"] == "completed"
        assert (await jobs_db.finished(nul))["status"] == "completed"
    assert retried["last_error"].startswith("HTTP 200 OK declared JSON but the body is not JSON")
