"""Task identifiers that would become a path on the way to a function are refused on insert."""

from __future__ import annotations

import psycopg
import pytest

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
Conn = psycopg.Connection[dict[str, object]]
REFUSED = ["", ".", "..", "../admin", "a/b", "/", "email/../../x"]


def count(db: Conn, table: str = "jobs") -> object:
    row = db.execute(f"SELECT count(*) AS n FROM app_jobs.{table}").fetchone()
    assert row is not None
    return row["n"]


@pytest.mark.parametrize("identifier", REFUSED)
def test_add_job_refuses_a_task_identifier_that_is_a_path(db: Conn, identifier: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        db.execute("SELECT app_jobs.add_job(%s::uuid, %s, '{}'::json)", (DB_ID, identifier))
    message = str(caught.value)
    assert "task_identifier" in message
    assert "contains no '/'" in message
    assert caught.value.diag.column_name == "task_identifier"
    assert count(db) == 0


@pytest.mark.parametrize(
    "call",
    [
        "SELECT app_jobs.add_jobs(%s::json)",
        "SELECT app_jobs.add_scheduled_job(%s::uuid, '../x', '{}'::json, '{}'::json)",
        "INSERT INTO app_jobs.jobs (database_id, task_identifier) VALUES (%s, '..')",
        "INSERT INTO app_jobs.scheduled_jobs (database_id, task_identifier, schedule_info)"
        " VALUES (%s, 'a/b', '{}')",
    ],
)
def test_every_way_in_refuses_it(db: Conn, call: str) -> None:
    arg = (
        f'[{{"identifier": "ok", "db_id": "{DB_ID}"}}, {{"identifier": "x/y", "db_id": "{DB_ID}"}}]'
        if "add_jobs" in call
        else DB_ID
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="task_identifier"):
        db.execute(call, (arg,))
    assert (count(db), count(db, "scheduled_jobs")) == (0, 0)


def test_a_keyed_replacement_cannot_rename_a_job_to_a_path(db: Conn) -> None:
    db.execute("SELECT app_jobs.add_job(%s::uuid, 'fine', '{}'::json, job_key := 'k')", (DB_ID,))
    with pytest.raises(psycopg.errors.CheckViolation, match="task_identifier"):
        db.execute("SELECT app_jobs.add_job(%s::uuid, '..', '{}'::json, job_key := 'k')", (DB_ID,))
    with pytest.raises(psycopg.errors.CheckViolation, match="task_identifier"):
        db.execute("UPDATE app_jobs.jobs SET task_identifier = 'a/b'")
    rows = db.execute("SELECT task_identifier, key FROM app_jobs.jobs").fetchall()
    assert rows == [{"task_identifier": "fine", "key": "k"}]


@pytest.mark.parametrize(
    "identifier", ["email:send_verification_link", "simple-email", "a.b", "...", "x..y", "ü"]
)
def test_ordinary_task_names_are_accepted(db: Conn, identifier: str) -> None:
    row = db.execute(
        "SELECT task_identifier FROM app_jobs.add_job(%s::uuid, %s, '{}'::json)",
        (DB_ID, identifier),
    ).fetchone()
    assert row == {"task_identifier": identifier}
