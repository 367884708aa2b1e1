"""add_jobs (migration 0008): one read of the array, the same rules and messages as add_job.

What a caller notices: the jobs stored (fields, order of the ids and of the rows returned), a
refused array naming the element and the field and storing nothing, keyed elements following
add_job's replacement rules even within one array, one wake-up per call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import psycopg
import pytest

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
USER_ID = "11111111-2222-3333-4444-555555555555"
Conn = psycopg.Connection[dict[str, object]]
TenantConnect = Callable[..., Conn]


def add_jobs(db: Conn, jobs: object) -> list[dict[str, object]]:
    return db.execute(
        "SELECT id, task_identifier, payload, queue_name, run_at, max_attempts, priority, key,"
        " actor_id::text AS actor FROM app_jobs.add_jobs(%s::json)",
        (json.dumps(jobs),),
    ).fetchall()


def stored(db: Conn, columns: str = "task_identifier") -> list[dict[str, object]]:
    return db.execute(f"SELECT {columns} FROM app_jobs.jobs ORDER BY id").fetchall()


def test_every_field_of_an_element_is_stored(db: Conn) -> None:
    [row] = add_jobs(
        db,
        [
            {
                "identifier": "send",
                "db_id": DB_ID,
                "actor_id": USER_ID,
                "payload": {"to": "ada@example.com", "n": [1, 2]},
                "queue_name": "mail",
                "run_at": "2030-01-02T03:04:05Z",
                "max_attempts": 3,
                "priority": -2,
            }
        ],
    )
    assert row["task_identifier"] == "send"
    assert row["payload"] == {"to": "ada@example.com", "n": [1, 2]}
    assert (row["queue_name"], row["max_attempts"], row["priority"]) == ("mail", 3, -2)
    assert str(row["run_at"]).startswith("2030-01-02 03:04:05")
    assert row["actor"] == USER_ID


def test_left_out_and_null_fields_take_the_defaults(db: Conn) -> None:
    rows = add_jobs(
        db,
        [
            {"identifier": "a", "db_id": DB_ID},
            {
                "identifier": "b",
                "db_id": DB_ID,
                "payload": None,
                "queue_name": "default",
                "run_at": None,
                "max_attempts": None,
                "priority": None,
            },
            {"identifier": "c", "db_id": DB_ID, "queue_name": ""},
        ],
    )
    for row in rows:
        assert (row["payload"], row["queue_name"], row["max_attempts"], row["priority"]) == (
            {},
            None,
            25,
            0,
        )
    assert db.execute("SELECT bool_and(run_at <= now()) AS now FROM app_jobs.jobs").fetchone() == {
        "now": True
    }


def test_payloads_of_every_json_kind_are_stored_as_given(db: Conn) -> None:
    payloads: list[object] = [
        'a"b\\c\u00e9\u2028',
        5,
        2.5,
        True,
        [1, "x", None],
        {"k": {"v": "\t"}},
    ]
    rows = add_jobs(db, [{"identifier": "p", "db_id": DB_ID, "payload": p} for p in payloads])
    assert [row["payload"] for row in rows] == payloads


def test_unkeyed_jobs_come_back_in_array_order_then_keyed_ones(db: Conn) -> None:
    rows = add_jobs(
        db,
        [
            {"identifier": "u1", "db_id": DB_ID},
            {"identifier": "k1", "db_id": DB_ID, "job_key": "one"},
            {"identifier": "u2", "db_id": DB_ID},
            {"identifier": "k2", "db_id": DB_ID, "job_key": "two"},
            {"identifier": "u3", "db_id": DB_ID},
        ],
    )
    assert [row["task_identifier"] for row in rows] == ["u1", "u2", "u3", "k1", "k2"]
    ids = [int(str(row["id"])) for row in rows]
    assert ids[:3] == sorted(ids[:3])
    assert [r["task_identifier"] for r in stored(db)] == ["u1", "u2", "u3", "k1", "k2"]


def test_a_key_given_twice_in_one_array_keeps_the_last_job(db: Conn) -> None:
    add_jobs(
        db,
        [
            {"identifier": "first", "db_id": DB_ID, "job_key": "k", "payload": {"v": 1}},
            {"identifier": "second", "db_id": DB_ID, "job_key": "k", "payload": {"v": 2}},
        ],
    )
    assert stored(db, "task_identifier, payload, key") == [
        {"task_identifier": "second", "payload": {"v": 2}, "key": "k"}
    ]


def test_a_keyed_element_replaces_a_waiting_job_and_resets_its_attempts(db: Conn) -> None:
    db.execute("SELECT app_jobs.add_job(%s::uuid, 'old', '{}'::json, 'k')", (DB_ID,))
    db.execute("UPDATE app_jobs.jobs SET attempts = 4, last_error = 'boom'")
    add_jobs(db, [{"identifier": "new", "db_id": DB_ID, "job_key": "k", "payload": {"n": 1}}])
    assert stored(db, "task_identifier, payload, attempts, last_error") == [
        {"task_identifier": "new", "payload": {"n": 1}, "attempts": 0, "last_error": None}
    ]


@pytest.mark.parametrize(
    ("jobs", "error", "message"),
    [
        (
            [{"identifier": "ok", "db_id": DB_ID}, 7],
            psycopg.errors.InvalidParameterValue,
            r"^add_jobs\(jobs\): element 2 \(from 1\) must be a JSON object, got number$",
        ),
        (
            [{"identifier": "ok", "db_id": DB_ID}, {"db_id": DB_ID, "identifier": ""}],
            psycopg.errors.NotNullViolation,
            r'^add_jobs\(jobs\): element 2 \(from 1\) has no "identifier"$',
        ),
        (
            [
                {"identifier": "ok", "db_id": DB_ID},
                {"identifier": "x", "db_id": DB_ID, "run_at": 5},
            ],
            psycopg.errors.InvalidDatetimeFormat,
            r'^add_jobs\(jobs\): element 2 \(from 1\), field "run_at": invalid input syntax'
            r' for type timestamp with time zone: "5"$',
        ),
        (
            [{"identifier": "x", "db_id": DB_ID, "job_key": "k", "max_attempts": 2**31}],
            psycopg.errors.NumericValueOutOfRange,
            r'^add_jobs\(jobs\): element 1 \(from 1\), field "max_attempts": value "2147483648"'
            r" is out of range for type integer$",
        ),
        (
            [{"identifier": "x", "db_id": "not-a-uuid", "priority": "high"}],
            psycopg.errors.InvalidTextRepresentation,
            r'^add_jobs\(jobs\): element 1 \(from 1\), field "db_id": invalid input syntax'
            r' for type uuid: "not-a-uuid"$',
        ),
        (
            [{"identifier": "x", "db_id": DB_ID}, {"identifier": "y", "db_id": "nope"}],
            psycopg.errors.InvalidTextRepresentation,
            r'^add_jobs\(jobs\): element 2 \(from 1\), field "db_id": invalid input syntax'
            r' for type uuid: "nope"$',
        ),
        (
            [{"identifier": "x", "db_id": DB_ID, "actor_id": "nope", "job_key": "k"}],
            psycopg.errors.InvalidTextRepresentation,
            r'^add_jobs\(jobs\): element 1 \(from 1\), field "actor_id": invalid input syntax'
            r' for type uuid: "nope"$',
        ),
        (
            [{"identifier": "ok", "db_id": DB_ID}, {"identifier": "x"}],
            psycopg.errors.NotNullViolation,
            r"^no database id: pass db_id or set jwt\.claims\.database_id$",
        ),
    ],
)
def test_a_refused_array_names_the_element_and_field_and_stores_nothing(
    db: Conn, jobs: object, error: type[psycopg.Error], message: str
) -> None:
    with pytest.raises(error) as caught:
        add_jobs(db, jobs)
    assert re.match(message, caught.value.diag.message_primary or ""), caught.value
    assert stored(db) == []


def test_a_tenant_naming_another_tenant_in_a_later_element_is_refused(
    db: Conn, as_tenant: TenantConnect
) -> None:
    tenant = as_tenant(DB_ID, USER_ID)
    jobs = [
        {"identifier": "a"},
        {"identifier": "b", "db_id": DB_ID, "actor_id": USER_ID},
        {"identifier": "c", "db_id": "00000000-0000-0000-0000-000000000009"},
    ]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"^add_jobs\(jobs\): element 3"):
        add_jobs(tenant, jobs)
    assert stored(db) == []


def test_one_call_wakes_the_workers_once(db: Conn, connect: Callable[[], Conn]) -> None:
    listener = connect()
    listener.execute('LISTEN "jobs:insert"')
    listener.execute("LISTEN bench_marker")
    add_jobs(
        db,
        [{"identifier": f"j{i}", "db_id": DB_ID} for i in range(50)]
        + [{"identifier": "k", "db_id": DB_ID, "job_key": "k"}],
    )
    db.execute("NOTIFY bench_marker")  # delivered after every notification of the call
    channels = []
    for note in listener.notifies(timeout=10):
        channels.append(note.channel)
        if note.channel == "bench_marker":
            break
    assert channels == ["jobs:insert", "bench_marker"]
