"""jobfn.client.add_job of one job: the job returned is the one stored, the claims fill in what
is left out, and the same errors come back as for a batch of one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import BaseModel

from jobfn.client import Job, add_job, add_job_async

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
CLAIM_DB = "00000000-0000-0000-0000-0000000000c1"
CLAIM_USER = "00000000-0000-0000-0000-0000000000c2"
ACTOR = "0b6d2d9e-7d5c-4b49-9d57-3f6c1f0f2a11"


class Reminder(BaseModel):
    text: str
    at: int = 9


def stored(conninfo: str, job_id: int) -> dict[str, Any]:
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def as_job(row: dict[str, Any]) -> Job:
    return Job(**{field: row[field] for field in Job.__dataclass_fields__})


def test_the_job_returned_is_the_stored_row(db_conninfo: str) -> None:
    job = add_job(
        "remind",
        Reminder(text="call Ada"),
        conninfo=db_conninfo,
        database_id=UUID(DB_ID),
        job_key="ada",
        queue_name="people",
        run_at=datetime(2032, 1, 2, 3, 4, 5, tzinfo=UTC),
        max_attempts=4,
        priority=-1,
    )
    assert job == as_job(stored(db_conninfo, job.id))
    assert job.payload == {"text": "call Ada", "at": 9}
    assert (job.key, job.queue_name, job.max_attempts, job.priority) == ("ada", "people", 4, -1)
    assert job.run_at == datetime(2032, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_defaults_and_a_default_queue_name(db_conninfo: str) -> None:
    job = add_job("plain", conninfo=db_conninfo, db_id=DB_ID, queue_name="default")
    assert job == as_job(stored(db_conninfo, job.id))
    assert (job.payload, job.queue_name, job.max_attempts, job.priority, job.attempts) == (
        {},
        None,
        25,
        0,
        0,
    )


def test_the_claims_give_the_database_and_the_actor(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo) as conn:
        conn.execute(
            "SELECT set_config('jwt.claims.database_id', %s, true),"
            " set_config('jwt.claims.user_id', %s, true)",
            (CLAIM_DB, CLAIM_USER),
        )
        job = add_job("from-claims", {"n": 1}, conn=conn)
        named = add_job("named-actor", conn=conn, actor_id=ACTOR)
        conn.commit()
    assert (job.database_id, job.actor_id) == (UUID(CLAIM_DB), UUID(CLAIM_USER))
    assert (named.database_id, named.actor_id) == (UUID(CLAIM_DB), UUID(ACTOR))
    assert job == as_job(stored(db_conninfo, job.id))


def test_without_a_database_id_or_claims_nothing_is_stored(db_conninfo: str) -> None:
    with pytest.raises(psycopg.errors.NotNullViolation, match="no database id"):
        add_job("nowhere", conninfo=db_conninfo)
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM app_jobs.jobs").fetchone() == (0,)


def test_an_unreadable_database_id_is_a_data_error(db_conninfo: str) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="uuid"):
        add_job("t", conninfo=db_conninfo, database_id="not-a-uuid")


async def test_the_async_form_returns_the_stored_row(db_conninfo: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as conn:
        job = await add_job_async("later", [1, "two"], conn=conn, database_id=DB_ID, priority=3)
    assert job == as_job(stored(db_conninfo, job.id))
    assert job.payload == [1, "two"]
