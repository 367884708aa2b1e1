"""What a careful reviewer checks on the HTTP API and dashboard: the token read from a file
(``JOBS_API_TOKEN_FILE``) and placeholders refused, cross-site requests refused on every POST
(sign-out included, Fetch Metadata believed), bad input answered with the field's name, and an
event stream whose client went away forgotten at once rather than at the next keepalive."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from jobservice.admin import queries
from jobservice.api import KEEPALIVE, Api
from jobservice.dashboard import Dashboard
from jobservice.events import EventHub

JOBS = str(Path(sys.executable).parent / "jobs")
PLACEHOLDER = "change-me-to-a-long-random-token"
"""The value deploy/secrets.yaml ships (longer than 16 characters)."""
OPEN_DASHBOARD_ROUTES = {"/dashboard/login", "/dashboard/logout", "/dashboard/static/{name}"}
"""The only routes under /dashboard that answer without the token (sign-in, sign-out, assets)."""


async def test_the_token_can_come_from_a_file(start: Any, sql: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "api-token"
    token_file.write_text(secrets.token_urlsafe(48) + "\n")
    server = start(JOBS_CALLBACK_BIND="0.0.0.0", JOBS_API_TOKEN_FILE=str(token_file))
    assert server.token == token_file.read_text().strip()
    job_id = sql.add("report")
    async with aiohttp.ClientSession(server.url) as http:
        async with http.get(f"/api/jobs/{job_id}") as answer:
            assert answer.status == 401
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        async with http.get(f"/api/jobs/{job_id}", headers=server.headers()) as answer:
            assert answer.status == 200
            assert (await answer.json())["id"] == job_id


@pytest.mark.parametrize("variable", ["JOBS_API_TOKEN", "JOBS_API_TOKEN_FILE"])
def test_the_shipped_placeholder_token_is_refused(
    db_conninfo: str, tmp_path: Path, variable: str
) -> None:
    placeholder_file = tmp_path / "api-token"
    placeholder_file.write_text(PLACEHOLDER + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "JOBS_"))}
    env.update(
        {
            "DATABASE_URL": db_conninfo,
            "JOBS_CALLBACK_BIND": "0.0.0.0",
            "JOBS_SIGNING_SECRET": secrets.token_hex(32),
            variable: PLACEHOLDER if variable == "JOBS_API_TOKEN" else str(placeholder_file),
        }
    )
    result = subprocess.run(
        [JOBS, "worker"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"jobs worker: {variable}: expected a random secret of at least 32")
    assert "placeholder" in line
    assert PLACEHOLDER not in line


async def test_cross_site_posts_are_refused(token_server: Any, sql: Any) -> None:
    job_id = sql.add("report")
    right = token_server.headers()
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP-address host
    async with aiohttp.ClientSession(token_server.url, cookie_jar=jar) as http:
        # a browser that announces a cross-site request, even without an Origin header
        cross = {**right, "Sec-Fetch-Site": "cross-site"}
        async with http.post(f"/api/jobs/{job_id}/cancel", headers=cross) as answer:
            assert answer.status == 403
        assert sql.status(job_id) == "queued"
        async with http.post(
            "/dashboard/login", data={"token": token_server.token}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        # signing out is a POST too: another site cannot sign the operator out
        foreign = {"Origin": "http://evil.example"}
        async with http.post("/dashboard/logout", headers=foreign, allow_redirects=False) as a:
            assert a.status == 403
            assert "Set-Cookie" not in a.headers
        async with http.get("/dashboard", allow_redirects=False) as answer:
            assert answer.status == 200
        own = {"Origin": token_server.url, "Sec-Fetch-Site": "same-origin"}
        async with http.post("/dashboard/logout", headers=own, allow_redirects=False) as answer:
            assert answer.status == 303
        async with http.get("/dashboard", allow_redirects=False) as answer:
            assert answer.status == 303


async def test_a_loopback_service_refuses_cross_site_posts(server: Any, sql: Any) -> None:
    async with (
        aiohttp.ClientSession(server.url) as http,
        http.post(
            "/api/jobs", json={"task": "report"}, headers={"Sec-Fetch-Site": "cross-site"}
        ) as answer,
    ):
        assert answer.status == 403
    assert sql.rows("SELECT count(*) FROM app_jobs.jobs") == [(0,)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"message": 5}', "message: expected a non-empty string"),
        ('{"message": " "}', "message: expected a non-empty string"),
        ('{"reason": "dup"}', "reason: unknown field"),
        ("[1]", "body: expected a JSON object"),
        ("{nope", "body: expected JSON"),
    ],
)
async def test_a_bad_cancel_body_names_the_field(
    server: Any, sql: Any, body: str, message: str
) -> None:
    job_id = sql.add("report")
    async with (
        aiohttp.ClientSession(server.url) as http,
        http.post(
            f"/api/jobs/{job_id}/cancel", data=body, headers={"Content-Type": "application/json"}
        ) as answer,
    ):
        assert (answer.status, await answer.json()) == (400, {"error": message})
    assert sql.status(job_id) == "queued"


async def test_a_job_stream_of_no_job_holds_no_subscriber(
    api_server: tuple[str, EventHub],
) -> None:
    url, hub = api_server
    async with aiohttp.ClientSession(url) as http, http.get("/api/jobs/424242/events") as answer:
        assert (answer.status, await answer.json()) == (404, {"error": "job 424242: no such job"})
    assert not hub.subscribers


async def test_ids_and_offsets_out_of_range_are_answered_plainly(server: Any) -> None:
    huge = "9" * 25
    async with aiohttp.ClientSession(server.url) as http:
        for method, path in (
            ("GET", f"/api/jobs/{huge}"),
            ("POST", f"/api/jobs/{huge}/retry"),
            ("POST", f"/api/jobs/{huge}/cancel"),
            ("GET", f"/api/jobs/{huge}/events"),
        ):
            async with http.request(method, path) as answer:
                assert (answer.status, await answer.json()) == (
                    404,
                    {"error": f"job {huge}: no such job"},
                ), path
        async with http.get("/api/jobs", params={"offset": "1" + "0" * 12}) as answer:
            assert (answer.status, await answer.json()) == (
                400,
                {"error": "offset: expected an integer from 0 to 1000000000"},
            )


async def serve(
    db_conninfo: str, token: str | None
) -> AsyncIterator[tuple[str, EventHub, web.Application]]:
    """The API and dashboard routes on a real aiohttp server on 127.0.0.1 (in this process, so
    a test can see the event hub's subscribers and the route table)."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(db_conninfo, min_size=1, open=False)
    await pool.open()
    q = queries("app_jobs")
    hub = EventHub(db_conninfo, pool, q["jobs_by_ids"])
    app = web.Application()
    api = Api(pool, q, hub, token=token)
    app.add_routes(api.routes())
    app.add_routes(Dashboard(api).routes())
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", hub, app
    finally:
        hub.close()
        await runner.cleanup()
        await pool.close()


@pytest.fixture
async def api_server(db_conninfo: str) -> AsyncIterator[tuple[str, EventHub]]:
    """:func:`serve` on loopback without a token."""
    async for url, hub, _ in serve(db_conninfo, None):
        yield url, hub


async def test_every_api_and_dashboard_route_needs_the_token(db_conninfo: str) -> None:
    token = secrets.token_urlsafe(32)
    async for url, _, app in serve(db_conninfo, token):
        routes = [
            (r.method, r.resource.canonical)
            for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"
        ]
        assert ("GET", "/api/events") in routes
        checked = 0
        async with aiohttp.ClientSession(url) as http:
            for method, path in routes:
                if path in OPEN_DASHBOARD_ROUTES:
                    continue
                concrete = path.replace("{id}", "1")
                async with http.request(method, concrete, allow_redirects=False) as answer:
                    if path.startswith("/api/"):
                        assert answer.status == 401, (method, path)
                    else:
                        assert (answer.status, answer.headers.get("Location")) == (
                            303,
                            "/dashboard/login",
                        ), (method, path)
                checked += 1
        assert checked >= 12


async def until_no_subscribers(hub: EventHub, within: float) -> None:
    """Wait (bounded) until every subscriber is gone; the hub has no event for it, so look."""
    deadline = asyncio.get_running_loop().time() + within
    while hub.subscribers:
        assert asyncio.get_running_loop().time() < deadline, "subscriber still held"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("stream", ["all", "one"])
async def test_a_closed_event_stream_is_forgotten_at_once(
    api_server: tuple[str, EventHub], sql: Any, stream: str
) -> None:
    url, hub = api_server
    path = "/api/events" if stream == "all" else f"/api/jobs/{sql.add('report')}/events"
    async with aiohttp.ClientSession(url) as http:
        answer = await http.get(path)
        assert answer.status == 200
        first = await asyncio.wait_for(answer.content.readline(), 10)
        assert first.startswith(b"retry:")
        assert len(hub.subscribers) == 1
        answer.close()
    # well before the next keepalive write would have found the connection closed
    await until_no_subscribers(hub, within=KEEPALIVE / 3)
