"""jobfn.client.add_jobs with many jobs given as mappings: what is stored, what comes back.

The jobs returned are those stored (every field), in the order given, whatever mix of keyed and
unkeyed jobs and payload kinds; a mapping is checked as a ``JobSpec`` would be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import BaseModel

from jobfn.client import Job, JobSpec, add_jobs

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
OTHER_DB = "00000000-0000-0000-0000-00000000000a"
ACTOR = "0b6d2d9e-7d5c-4b49-9d57-3f6c1f0f2a11"


class Note(BaseModel):
    text: str


def stored_rows(conninfo: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        return {row["id"]: row for row in cur.execute("SELECT * FROM app_jobs.jobs").fetchall()}


def test_the_jobs_returned_are_the_stored_rows_in_the_order_given(db_conninfo: str) -> None:
    payloads: list[Any] = [
        {},
        {"to": "ada@example.com", "tags": ["a", "b"]},
        'a "quoted" \u00e9 string',
        42,
        [1, None, {"x": True}],
        None,
    ]
    jobs: list[JobSpec | dict[str, Any]] = [
        {"task": f"t{i}", "payload": payload, "database_id": DB_ID}
        for i, payload in enumerate(payloads)
    ]
    jobs.insert(2, {"task": "keyed", "job_key": "k", "db_id": DB_ID, "queue_name": "q"})
    jobs.append(JobSpec("spec", Note(text="hi"), database_id=DB_ID, priority=-3))
    jobs.append(
        {
            "identifier": "all",
            "payload": {"n": 1},
            "database_id": DB_ID,
            "run_at": datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
            "max_attempts": 2,
            "priority": 4,
            "actor_id": ACTOR,
            "queue_name": "default",
        }
    )
    got = add_jobs(jobs, conninfo=db_conninfo)

    assert [job.task_identifier for job in got] == [
        "t0",
        "t1",
        "keyed",
        "t2",
        "t3",
        "t4",
        "t5",
        "spec",
        "all",
    ]
    assert [job.payload for job in got] == [
        {},
        {"to": "ada@example.com", "tags": ["a", "b"]},
        {},
        'a "quoted" \u00e9 string',
        42,
        [1, None, {"x": True}],
        {},
        {"text": "hi"},
        {"n": 1},
    ]
    rows = stored_rows(db_conninfo)
    assert sorted(rows) == sorted(job.id for job in got)
    for job in got:
        row = rows[job.id]
        assert job == Job(**{field: row[field] for field in Job.__dataclass_fields__})
    last = got[-1]
    assert (last.run_at, last.max_attempts, last.priority, last.queue_name) == (
        datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
        2,
        4,
        None,
    )
    assert last.actor_id == UUID(ACTOR)
    assert got[2].key == "k"
    assert got[2].queue_name == "q"


def test_db_id_in_a_mapping_wins_over_database_id(db_conninfo: str) -> None:
    [job] = add_jobs([{"task": "t", "database_id": OTHER_DB, "db_id": DB_ID}], conninfo=db_conninfo)
    assert job.database_id == UUID(DB_ID)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"payload": {}}, r"each job needs a 'task'"),
        ({"task": 5}, r"each job needs a 'task'"),
        ({"task": ""}, r"each job needs a 'task'"),
        ({"task": "t", "max_attempts": 0}, r"max_attempts must be at least 1 \(got 0\)"),
        ({"task": "t", "priorty": 1}, r"unknown job option in .*'priorty'"),
        ({"task": "t", "identifier": "u"}, r"unknown job option in .*'identifier'"),
    ],
)
def test_a_bad_mapping_is_refused_before_anything_is_sent(
    db_conninfo: str, job: dict[str, Any], message: str
) -> None:
    good = {"task": "fine", "database_id": DB_ID}
    with pytest.raises(ValueError, match=message):
        add_jobs([good, job], conninfo=db_conninfo)
    assert stored_rows(db_conninfo) == {}
