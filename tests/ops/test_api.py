"""The HTTP API of a real ``jobs worker`` process over HTTP: reading, adding, retrying and
cancelling jobs, Server-Sent Events driven by LISTEN/NOTIFY, the token rules, and the history
retention the service applies."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

JOBS = str(Path(sys.executable).parent / "jobs")
TOKEN = "ops-test-token-0123456789abcdefghijk"
Event = tuple[str, dict[str, Any]]


async def sse(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """The ``(event, data)`` messages of an SSE response."""
    kind = "message"
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: ") :])
            kind = "message"


async def until(
    stream: AsyncIterator[Event], wanted: Callable[[str, dict[str, Any]], bool], within: float = 15
) -> dict[str, Any]:
    """The data of the first message ``wanted`` accepts (fail after ``within`` seconds)."""

    async def scan() -> dict[str, Any]:
        async for kind, data in stream:
            if wanted(kind, data):
                return data
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(scan(), within)


def job_event(job_id: int, **fields: object) -> Callable[[str, dict[str, Any]], bool]:
    """Accept the ``job`` event of ``job_id`` whose fields have these values."""

    def accept(kind: str, data: dict[str, Any]) -> bool:
        return (
            kind == "job"
            and data.get("id") == job_id
            and all(data.get(k) == v for k, v in fields.items())
        )

    return accept


async def test_read_add_cancel_and_retry_jobs(server: Any, sql: Any) -> None:
    async with aiohttp.ClientSession(server.url) as http:
        async with http.post(
            "/api/jobs",
            json={"task": "report", "payload": {"month": 11}, "priority": 2, "in": "10m"},
        ) as answer:
            assert answer.status == 201
            job = await answer.json()
        assert (job["task"], job["status"], job["payload"], job["priority"]) == (
            "report",
            "scheduled",
            {"month": 11},
            2,
        )
        queued = sql.add("export")
        async with http.get("/api/jobs", params={"status": "queued,scheduled"}) as answer:
            assert [j["id"] for j in await answer.json()] == [queued, job["id"]]
        async with http.get("/api/jobs", params={"task": "export"}) as answer:
            assert [j["id"] for j in await answer.json()] == [queued]
        async with http.get(f"/api/jobs/{queued}") as answer:
            assert (await answer.json())["status"] == "queued"

        async with http.post(f"/api/jobs/{queued}/cancel", json={"message": "not today"}) as a:
            assert a.status == 200
            cancelled = await a.json()
        assert (cancelled["status"], cancelled["last_error"]) == ("cancelled", "not today")
        async with http.post(f"/api/jobs/{queued}/cancel") as answer:
            assert answer.status == 409
            assert await answer.json() == {"error": f"job {queued} is cancelled: not cancelled"}
        async with http.post(f"/api/jobs/{queued}/retry") as answer:
            assert answer.status == 200
            assert (await answer.json())["status"] == "queued"
        async with http.post(f"/api/jobs/{queued}/retry") as answer:
            assert answer.status == 409
        async with http.get("/api/jobs/987654") as answer:
            assert (answer.status, await answer.json()) == (
                404,
                {"error": "job 987654: no such job"},
            )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"payload": {}}, "task: expected a non-empty string"),
        ({"task": "t", "payload": [1]}, "payload: expected a JSON object"),
        ({"task": "t", "priority": "high"}, "priority: expected an integer"),
        ({"task": "t", "run_at": "2030-01-01T00:00"}, "run_at: expected a time zone"),
        ({"task": "t", "in": "later"}, "in: expected a duration like 90s"),
        ({"task": "t", "database_id": "x"}, "database_id: expected a UUID"),
        ({"task": "t", "colour": "red"}, "colour: unknown field"),
        ({"task": "t", "priority": 2**40}, "priority: expected an integer from -2147483648"),
        ({"task": "t", "max_attempts": 2**31}, "max_attempts: expected an integer from"),
    ],
)
async def test_bad_requests_name_the_field(
    server: Any, sql: Any, body: dict[str, Any], message: str
) -> None:
    async with aiohttp.ClientSession(server.url) as http, http.post("/api/jobs", json=body) as a:
        assert a.status == 400
        assert (await a.json())["error"].startswith(message)
    assert sql.rows("SELECT count(*) FROM app_jobs.jobs") == [(0,)]


async def test_bad_filters_are_refused(server: Any) -> None:
    async with aiohttp.ClientSession(server.url) as http:
        async with http.get("/api/jobs", params={"status": "stuck"}) as answer:
            assert answer.status == 400
            assert (await answer.json())["error"].startswith("status: expected one of")
        async with http.get("/api/jobs", params={"limit": "0"}) as answer:
            assert (answer.status, await answer.json()) == (
                400,
                {"error": "limit: expected an integer from 1 to 500"},
            )


async def test_events_push_status_and_progress_as_they_happen(server: Any, sql: Any) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(server.url, timeout=timeout) as http,
        http.get("/api/events") as everything,
    ):
        assert everything.headers["Content-Type"].startswith("text/event-stream")
        stream = sse(everything)
        await until(stream, lambda kind, data: kind == "ready")
        job_id = await asyncio.to_thread(sql.add, "report")
        await until(stream, job_event(job_id, status="queued", task="report"))

        async with http.get(f"/api/jobs/{job_id}/events") as one:
            single = sse(one)
            await until(single, job_event(job_id, status="queued"))
            assert await asyncio.to_thread(sql.claim) == [job_id]
            await until(stream, job_event(job_id, status="running", attempts=1))
            await asyncio.to_thread(sql.progress, job_id, 40, "page 4 of 10")
            seen = await until(single, job_event(job_id, progress=40))
            assert seen["progress_message"] == "page 4 of 10"
            await until(stream, job_event(job_id, progress=40))
            await asyncio.to_thread(sql.complete, job_id)
            await until(single, job_event(job_id, status="completed"))
            await until(stream, job_event(job_id, status="completed"))


async def test_a_token_is_required_off_loopback(token_server: Any, sql: Any) -> None:
    job_id = sql.add("report")
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP-address host
    async with aiohttp.ClientSession(token_server.url, cookie_jar=jar) as http:
        async with http.get("/api/jobs") as answer:
            assert answer.status == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        async with http.get("/api/jobs", headers=wrong) as answer:
            assert answer.status == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"/api/jobs/{job_id}", headers=right) as answer:
            assert answer.status == 200
        async with http.get("/api/events", headers=wrong) as answer:
            assert answer.status == 401
        foreign = {**right, "Origin": "http://evil.example"}
        async with http.post(f"/api/jobs/{job_id}/cancel", headers=foreign) as answer:
            assert answer.status == 403
        assert sql.status(job_id) == "queued"
        async with http.get("/dashboard", allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/dashboard/login")
        async with http.post("/dashboard/login", data={"token": "guess"}) as answer:
            assert answer.status == 401
        async with http.post(
            "/dashboard/login", data={"token": TOKEN}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
            cookie = answer.cookies["jobs_api_token"]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Strict"
        async with http.get("/dashboard", allow_redirects=False) as answer:
            assert answer.status == 200
            assert "Content-Security-Policy" in answer.headers
            assert "Sign out" in await answer.text()
        async with http.get("/health/readiness") as answer:
            assert answer.status == 200


async def test_loopback_without_token_refuses_other_host_names(server: Any) -> None:
    async with (
        aiohttp.ClientSession(server.url) as http,
        http.get("/api/jobs", headers={"Host": "rebound.example"}) as answer,
    ):
        assert answer.status == 401


def test_the_service_refuses_to_expose_the_api_without_a_token(db_conninfo: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "JOBS_"))}
    env.update(
        {
            "DATABASE_URL": db_conninfo,
            "JOBS_CALLBACK_BIND": "0.0.0.0",
            "JOBS_SIGNING_SECRET": secrets.token_hex(32),
        }
    )
    result = subprocess.run(
        [JOBS, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("jobs worker: JOBS_API_TOKEN: expected a token of at least 32")
    assert "0.0.0.0" in line


def test_the_service_prunes_history_past_the_retention(sql: Any, start: Any) -> None:
    old, recent = sql.add("report"), sql.add("report")
    sql.claim()
    sql.complete(old)
    sql.complete(recent)
    sql.rows(
        "UPDATE app_jobs.job_history SET finished_at = now() - interval '3 days' WHERE job_id = %s",
        [old],
    )
    start(JOBS_HISTORY_RETENTION="2d")
    deadline = time.monotonic() + 20
    while sql.status(old) is not None:
        assert time.monotonic() < deadline, "the old history row was not pruned"
        time.sleep(0.05)
    assert sql.status(recent) == "completed"


async def test_input_the_database_refuses_is_a_bad_request(server: Any, sql: Any) -> None:
    async with (
        aiohttp.ClientSession(server.url) as http,
        http.post("/api/jobs", json={"task": "../etc"}) as answer,
    ):
        assert answer.status == 400
        assert (await answer.json())["error"].startswith("refused by the database:")
    assert sql.rows("SELECT count(*) FROM app_jobs.jobs") == [(0,)]
