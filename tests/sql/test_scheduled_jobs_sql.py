"""Scheduled jobs: get_scheduled_job, run_scheduled_job (ALREADY_SCHEDULED, keys), release."""

from __future__ import annotations

import psycopg
import pytest

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
Conn = psycopg.Connection[dict[str, object]]


def schedule(db: Conn, key: str | None = None, max_attempts: int = 25) -> int:
    row = db.execute(
        "SELECT id FROM app_jobs.add_scheduled_job(%s::uuid, 'tick', '{\"n\": 1}'::json,"
        ' \'{"rule": "* * * * *"}\'::json, job_key := %s, max_attempts := %s)',
        (DB_ID, key, max_attempts),
    ).fetchone()
    assert row is not None
    return int(str(row["id"]))


def run(db: Conn, schedule_id: int) -> dict[str, object]:
    row = db.execute("SELECT * FROM app_jobs.run_scheduled_job(%s)", (schedule_id,)).fetchone()
    assert row is not None
    return row


def test_run_scheduled_job_spawns_a_job_and_records_it(db: Conn) -> None:
    sid = schedule(db)
    job = run(db, sid)
    assert (job["task_identifier"], job["payload"], job["max_attempts"]) == ("tick", {"n": 1}, 25)
    row = db.execute(
        "SELECT last_scheduled_id, last_scheduled IS NOT NULL AS stamped"
        " FROM app_jobs.scheduled_jobs"
    ).fetchone()
    assert row == {"last_scheduled_id": job["id"], "stamped": True}


def test_already_scheduled_while_the_previous_job_is_pending(db: Conn) -> None:
    sid = schedule(db, max_attempts=2)
    first = run(db, sid)
    with pytest.raises(psycopg.errors.RaiseException, match="ALREADY_SCHEDULED"):
        run(db, sid)  # waiting to run
    db.execute("SELECT app_jobs.claim_jobs('worker-1')")
    with pytest.raises(psycopg.errors.RaiseException, match="ALREADY_SCHEDULED"):
        run(db, sid)  # running
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, 'boom')", (first["id"],))
    with pytest.raises(psycopg.errors.RaiseException, match="ALREADY_SCHEDULED"):
        run(db, sid)  # waiting for its retry
    db.execute("UPDATE app_jobs.jobs SET run_at = now()")
    db.execute("SELECT app_jobs.claim_jobs('worker-1')")
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, 'boom again')", (first["id"],))
    second = run(db, sid)  # the previous one is exhausted (in history): not pending
    assert second["id"] != first["id"]
    db.execute("SELECT app_jobs.claim_jobs('worker-1')")
    db.execute("SELECT app_jobs.complete_job('worker-1', %s)", (second["id"],))
    assert run(db, sid)["id"] not in (first["id"], second["id"])


def test_a_stale_lock_of_a_dead_worker_does_not_block_the_schedule(db: Conn) -> None:
    sid = schedule(db)
    run(db, sid)
    db.execute("SELECT app_jobs.claim_jobs('worker-1')")
    db.execute("UPDATE app_jobs.jobs SET locked_at = now() - interval '2 hours'")
    assert run(db, sid)["id"] is not None


def test_a_keyed_schedule_replaces_its_waiting_job(db: Conn) -> None:
    sid = schedule(db, key="every-minute")
    first = run(db, sid)
    assert first["key"] == "every-minute"
    db.execute(
        "UPDATE app_jobs.jobs SET locked_at = now() - interval '2 hours', locked_by = 'gone-worker'"
    )
    # the stale job holds the key: a running job with the key means ALREADY_SCHEDULED
    with pytest.raises(psycopg.errors.RaiseException, match="ALREADY_SCHEDULED"):
        run(db, sid)
    db.execute("UPDATE app_jobs.jobs SET locked_at = NULL, locked_by = NULL, attempts = 25")
    # exhausted job with the key (no longer pending): replaced in place via ON CONFLICT
    again = run(db, sid)
    assert again["id"] == first["id"]
    assert (again["attempts"], again["key"]) == (0, "every-minute")
    assert db.execute("SELECT count(*) AS n FROM app_jobs.jobs").fetchone() == {"n": 1}


def test_run_scheduled_job_of_a_deleted_schedule_returns_nulls(db: Conn) -> None:
    assert run(db, 12345)["id"] is None


def test_get_and_release_scheduled_jobs(db: Conn) -> None:
    a, b = schedule(db), schedule(db)
    first = db.execute("SELECT * FROM app_jobs.get_scheduled_job('sched-1')").fetchone()
    second = db.execute("SELECT * FROM app_jobs.get_scheduled_job('sched-1')").fetchone()
    none = db.execute("SELECT * FROM app_jobs.get_scheduled_job('sched-2')").fetchone()
    assert first is not None
    assert second is not None
    assert none is not None
    assert (first["id"], second["id"], none["id"]) == (a, b, None)
    db.execute("SELECT app_jobs.release_scheduled_jobs('sched-1', ARRAY[%s]::bigint[])", (a,))
    again = db.execute("SELECT id FROM app_jobs.get_scheduled_job('sched-2')").fetchone()
    assert again == {"id": a}
    db.execute("SELECT app_jobs.release_scheduled_jobs('sched-1')")
    locks = db.execute("SELECT id, locked_by FROM app_jobs.scheduled_jobs ORDER BY id")
    assert locks.fetchall() == [{"id": a, "locked_by": "sched-2"}, {"id": b, "locked_by": None}]
