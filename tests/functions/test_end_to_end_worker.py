"""Each email type end to end: a job in PostgreSQL, our worker (``jobs worker``) dispatching it
over HTTP to the function served by uvicorn, the stand-in GraphQL API and Mailgun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

if TYPE_CHECKING:
    from tests.functions.conftest import FunctionProcess, Serve, StandInGraphQL, StandInMailgun

DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
SENDER = "9a5b1e3c-7d42-4c8e-b1f0-2e6d8c4a7b19"
SECRET = "e2e-signing-secret-0123456789abcdef0123456789"
"""Shared by the job service and the functions: every dispatch and callback is signed."""
SITE: dict[str, Any] = {
    "domains": {"nodes": [{"subdomain": "app", "domain": "example.com"}]},
    "logo": None,
    "title": "Acme",
    "siteThemes": {"nodes": [{"theme": {"primary": "#335C67"}}]},
    "siteModules": {
        "nodes": [
            {
                "data": {
                    "emails": {"support": "support@acme.test"},
                    "company": {"name": "Acme, Inc.", "nick": "Acme"},
                }
            }
        ]
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def functions(
    serve: Serve, graphql_server: StandInGraphQL, mailgun_env: dict[str, str]
) -> dict[str, FunctionProcess]:
    signed_mailgun = {**mailgun_env, "JOBS_SIGNING_SECRET": SECRET}
    link_env = {
        **signed_mailgun,
        "GRAPHQL_URL": f"{graphql_server.url}/graphql",
        "GRAPHQL_HOST_HEADER": "private.localhost",
        "META_GRAPHQL_HOST_HEADER": "private.localhost",
    }
    return {
        "simple-email": serve("simple_email", signed_mailgun),
        "email:send_verification_link": serve("send_verification_link", link_env),
    }


@pytest.fixture
def worker(
    db_conninfo: str, functions: dict[str, FunctionProcess], tmp_path: Path
) -> Iterator[str]:
    """``jobs worker`` on this test's database, routing both tasks to the served functions."""
    port = _free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PG")},
        "DATABASE_URL": db_conninfo,
        "HOSTNAME": "e2e-worker-1",
        "INTERNAL_GATEWAY_DEVELOPMENT_MAP": json.dumps(
            {task: fn.url for task, fn in functions.items()}
        ),
        "INTERNAL_JOBS_CALLBACK_PORT": str(port),
        "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{port}/callback",
        "JOBS_CALLBACK_BIND": "127.0.0.1",
        "JOBS_SCHEDULER_ENABLED": "false",
        "JOBS_SIGNING_SECRET": SECRET,
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "jobs"), "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"jobs worker exited: {log.read_text()}")
            try:
                url = f"http://127.0.0.1:{port}/health/readiness"
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs worker did not start: {log.read_text()}")
            time.sleep(0.05)  # no event to await: poll the port with a bounded deadline
        yield db_conninfo
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def enqueue(conninfo: str, task: str, payload: dict[str, Any], max_attempts: int = 3) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id FROM app_jobs.add_job(%s::uuid, %s, %s::json, max_attempts => %s)",
            (DB, task, json.dumps(payload), max_attempts),
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_until(conninfo: str, job_id: int, statuses: set[str]) -> dict[str, Any]:
    """The job's ``app_jobs.job_status`` once it reaches one of ``statuses`` (bounded poll)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            cursor = conn.execute(
                "SELECT status, attempts, last_error, result FROM app_jobs.job_status(%s)",
                (job_id,),
            )
            row = cursor.fetchone()
            if row is not None and row[0] in statuses:
                return dict(zip(("status", "attempts", "last_error", "result"), row, strict=True))
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is still {row}")
            time.sleep(0.05)  # the outcome is written by another process: poll its row


@pytest.fixture
def stand_ins(graphql: StandInGraphQL, mailgun: StandInMailgun) -> StandInMailgun:
    graphql.sites[DB] = SITE
    graphql.users[SENDER] = {"username": "ada", "displayName": "Ada", "profilePicture": None}
    return mailgun


def test_simple_email_job_completes_and_is_sent(worker: str, stand_ins: StandInMailgun) -> None:
    payload = {"to": "user@example.com", "subject": "Hello", "text": "It works"}
    job = wait_until(worker, enqueue(worker, "simple-email", payload), {"completed", "failed"})

    assert job["status"] == "completed", job
    assert job["result"] == {"messageId": "<1@stand-in>"}
    assert stand_ins.sent[0].form()["subject"] == "Hello"


@pytest.mark.parametrize(
    "case",
    [
        (
            {"email_type": "invite_email", "invite_token": "i1", "sender_id": SENDER},
            "Ada invited you to Acme!",
            "https://app.example.com/register?invite_token=i1&amp;email=user%40example.com&amp;type=app",
        ),
        (
            {"email_type": "forgot_password", "user_id": "u1", "reset_token": "r1"},
            "Acme Password Reset Request",
            "https://app.example.com/reset-password?role_id=u1&amp;reset_token=r1",
        ),
        (
            {"email_type": "email_verification", "email_id": "e1", "verification_token": "v1"},
            "Acme Email Verification",
            "https://app.example.com/verify-email?email_id=e1&amp;verification_token=v1",
        ),
    ],
)
def test_verification_link_job_completes_and_is_sent(
    worker: str,
    stand_ins: StandInMailgun,
    graphql: StandInGraphQL,
    case: tuple[dict[str, str], str, str],
) -> None:
    payload, subject, link = case
    job_id = enqueue(
        worker, "email:send_verification_link", {**payload, "email": "user@example.com"}
    )
    job = wait_until(worker, job_id, {"completed", "failed"})

    assert job["status"] == "completed", job
    form = stand_ins.sent[0].form()
    assert form["subject"] == subject
    assert link in form["html"]
    [meta] = graphql.of("GetDatabaseInfo")
    assert meta.headers["host"] == "private.localhost"
    assert meta.json()["variables"] == {"databaseId": DB}


def test_a_missing_field_fails_the_job_for_good_at_once(
    worker: str, stand_ins: StandInMailgun
) -> None:
    payload = {"email_type": "forgot_password", "email": "user@example.com"}
    job_id = enqueue(worker, "email:send_verification_link", payload, max_attempts=5)
    job = wait_until(worker, job_id, {"completed", "failed"})

    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert "Missing required field: user_id_or_reset_token" in job["last_error"]
    assert stand_ins.sent == []


def test_a_mailgun_outage_leaves_the_job_for_a_retry(
    worker: str, stand_ins: StandInMailgun
) -> None:
    stand_ins.status = 500
    payload = {"to": "user@example.com", "subject": "Later", "text": "retry me"}
    job_id = enqueue(worker, "simple-email", payload, max_attempts=5)
    deadline = time.monotonic() + 60
    with psycopg.connect(worker, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT status, attempts, last_error FROM app_jobs.job_status(%s)", (job_id,)
            ).fetchone()
            if row is not None and row[2] is not None:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.05)  # the outcome is written by another process: poll its row

    status, attempts, last_error = row
    assert status == "queued"
    assert attempts == 1
    assert "Mailgun answered HTTP 500" in last_error
