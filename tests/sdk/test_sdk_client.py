"""jobfn.client on a real PostgreSQL (app_jobs schema): add_job(s), job_status, .later."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import BaseModel

from jobfn import client, job_function
from jobfn.client import JobSpec, add_job, add_job_async, add_jobs, add_jobs_async, job_status

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
ACTOR = "0b6d2d9e-7d5c-4b49-9d57-3f6c1f0f2a11"


class Invite(BaseModel):
    email: str
    days: int = 7


@job_function(name="invite:send")
def send_invite(payload: Invite) -> None: ...


def stored(conninfo: str, job_id: int) -> dict[str, Any] | None:
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", (job_id,)).fetchone()


def test_add_job_with_every_option(db_conninfo: str) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    job = add_job(
        "email:send",
        {"to": "ada@example.com"},
        conninfo=db_conninfo,
        db_id=DB_ID,
        job_key="welcome-ada",
        queue_name="mail",
        run_at=run_at,
        max_attempts=3,
        priority=-5,
        actor_id=ACTOR,
    )
    row = stored(db_conninfo, job.id)
    assert row is not None
    assert str(row["database_id"]) == DB_ID
    assert row["task_identifier"] == "email:send"
    assert row["payload"] == {"to": "ada@example.com"}
    assert (row["key"], row["queue_name"], row["max_attempts"], row["priority"]) == (
        "welcome-ada",
        "mail",
        3,
        -5,
    )
    assert row["run_at"] == run_at
    assert str(row["actor_id"]) == ACTOR
    assert job.key == "welcome-ada"
    assert job.task_identifier == "email:send"


def test_add_job_defaults_and_key_replacement(db_conninfo: str) -> None:
    first = add_job("t", conninfo=db_conninfo, database_id=DB_ID, job_key="k")
    again = add_job("t", {"v": 2}, conninfo=db_conninfo, database_id=DB_ID, job_key="k")
    assert again.id == first.id  # a waiting keyed job is replaced, not duplicated
    row = stored(db_conninfo, first.id)
    assert row is not None
    assert row["payload"] == {"v": 2}
    assert (row["max_attempts"], row["priority"], row["queue_name"]) == (25, 0, None)
    with pytest.raises(ValueError, match="database_id or its alias db_id"):
        add_job("t", conninfo=db_conninfo, database_id=DB_ID, db_id=DB_ID)


def test_add_jobs_keeps_the_given_order(db_conninfo: str) -> None:
    jobs = add_jobs(
        [
            JobSpec("a", {"n": 1}, database_id=DB_ID, job_key="ka"),
            {"task": "b", "payload": {"n": 2}, "db_id": DB_ID},
            {"identifier": "c", "payload": Invite(email="x@y"), "database_id": DB_ID},
        ],
        conninfo=db_conninfo,
    )
    assert [j.task_identifier for j in jobs] == ["a", "b", "c"]
    assert [j.payload for j in jobs] == [{"n": 1}, {"n": 2}, {"email": "x@y", "days": 7}]
    assert add_jobs([], conninfo=db_conninfo) == []
    with pytest.raises(ValueError, match="'task'"):
        add_jobs([{"payload": {}}], conninfo=db_conninfo)


def test_inside_the_callers_transaction(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo) as conn:
        job = add_job("t", conn=conn, database_id=DB_ID)
        conn.rollback()
    assert stored(db_conninfo, job.id) is None


async def test_async_forms(db_conninfo: str) -> None:
    job = await add_job_async("t", [1, 2], conninfo=db_conninfo, database_id=DB_ID, priority=2)
    assert job.payload == [1, 2]
    assert job.priority == 2
    async with await psycopg.AsyncConnection.connect(db_conninfo) as conn:
        many = await add_jobs_async(
            [JobSpec("x", database_id=DB_ID), JobSpec("y", database_id=DB_ID)], conn=conn
        )
        await conn.commit()
    assert [j.task_identifier for j in many] == ["x", "y"]
    assert stored(db_conninfo, many[1].id) is not None


def test_schema_name_is_an_identifier(db_conninfo: str) -> None:
    with pytest.raises(psycopg.errors.InvalidSchemaName, match='"no such"schema"'):
        add_job("t", conninfo=db_conninfo, database_id=DB_ID, schema='no such"schema')


def test_schema_from_jobs_schema(db_conninfo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobservice.migrate import migrate

    migrate(db_conninfo, schema="tenant_jobs")
    monkeypatch.setenv("JOBS_SCHEMA", "tenant_jobs")
    job = add_job("t", conninfo=db_conninfo, database_id=DB_ID)
    with psycopg.connect(db_conninfo) as conn:
        found = conn.execute("SELECT count(*) FROM tenant_jobs.jobs WHERE id = %s", (job.id,))
        assert found.fetchone() == (1,)


def test_job_status_of_a_queued_and_an_unknown_job(db_conninfo: str) -> None:
    job = add_job("t", {"a": 1}, conninfo=db_conninfo, database_id=DB_ID, max_attempts=4)
    status = job_status(job.id, conninfo=db_conninfo)
    assert status is not None
    assert (status.job_id, status.status, status.task_identifier) == (job.id, "queued", "t")
    assert (status.attempts, status.max_attempts) == (0, 4)
    assert not status.done
    assert job_status(10**12, conninfo=db_conninfo) is None


async def test_later_enqueues_under_the_function_name(db_conninfo: str) -> None:
    job = await send_invite.later(
        {"email": "ada@example.com"}, conninfo=db_conninfo, database_id=DB_ID, queue_name="q"
    )
    assert job.task_identifier == "invite:send"
    assert job.payload == {"email": "ada@example.com", "days": 7}
    assert job.queue_name == "q"
    sync_job = send_invite.later_sync(
        Invite(email="b@c", days=1), conninfo=db_conninfo, db_id=DB_ID
    )
    assert sync_job.payload == {"email": "b@c", "days": 1}
    with pytest.raises(ValueError, match="payload for job 'invite:send'"):
        send_invite.later_sync({"days": "x"}, conninfo=db_conninfo, db_id=DB_ID)


def test_the_module_is_optional_for_functions() -> None:
    # Function repositories import jobfn without psycopg: the client is never imported eagerly.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['psycopg'] = None; import jobfn, jobfn.testing; "
        "print('psycopg' in str(sorted(k for k in sys.modules if sys.modules[k])))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert client.DEFAULT_SCHEMA == "app_jobs"
    assert str(uuid.UUID(DB_ID)) == DB_ID


async def test_job_status_follows_the_job_to_completion(db_conninfo: str) -> None:
    job = add_job("t", conninfo=db_conninfo, database_id=DB_ID)
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("SELECT * FROM app_jobs.claim_jobs('worker-1', ARRAY['t'])")
        running = job_status(job.id, conn=conn)
        assert running is not None
        assert (running.status, running.locked_by, running.attempts) == ("running", "worker-1", 1)
        conn.execute(
            "SELECT app_jobs.complete_jobs('worker-1', ARRAY[%s]::bigint[], ARRAY[%s]::json[])",
            (job.id, '{"sent": true}'),
        )
    done = await client.job_status_async(job.id, conninfo=db_conninfo)
    assert done is not None
    assert (done.status, done.result, done.done) == ("completed", {"sent": True}, True)
    assert done.finished_at is not None
