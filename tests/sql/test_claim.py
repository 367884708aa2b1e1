"""Claiming: order, racing workers, serial queues, expired locks, get_job."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest
from sqljobs import DB_ID, Conn, add

Connect = Callable[[], Conn]


def claim(
    db: Conn, worker: str = "worker-1", n: int = 10, tasks: list[str] | None = None
) -> list[int]:
    rows = db.execute(
        "SELECT id FROM app_jobs.claim_jobs(%s, %s, '4 hours', %s)", (worker, tasks, n)
    ).fetchall()
    return [int(str(r["id"])) for r in rows]


def test_jobs_are_claimed_by_priority_then_run_at_then_id(db: Conn) -> None:
    late = add(db, run_at="2000-01-02T00:00:00Z")
    early = add(db, run_at="2000-01-01T00:00:00Z")
    urgent = add(db, priority=-5, run_at="2000-01-03T00:00:00Z")
    same_time_a = add(db, run_at="2000-01-01T00:00:00Z")
    lazy = add(db, priority=5, run_at="1999-01-01T00:00:00Z")
    assert claim(db, n=1) == [urgent]
    assert claim(db, n=2) == [early, same_time_a]
    assert claim(db, n=10) == [late, lazy]
    assert claim(db) == []


def test_claim_counts_the_attempt_and_locks_the_job(db: Conn) -> None:
    job = add(db)
    rows = db.execute("SELECT * FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 1)")
    (row,) = rows.fetchall()
    assert row["id"] == job
    assert row["attempts"] == 1
    assert row["locked_by"] == "worker-1"
    assert row["locked_at"] is not None
    assert row["locked_until"] is None


def test_future_jobs_and_other_tasks_are_not_claimed(db: Conn) -> None:
    add(db, "later", run_at="2999-01-01T00:00:00Z")
    mail = add(db, "mail")
    other = add(db, "other")
    assert claim(db, tasks=["mail", "nothing"]) == [mail]
    assert claim(db, tasks=["later"]) == []
    assert claim(db) == [other]


def test_a_short_worker_id_is_refused(db: Conn) -> None:
    with pytest.raises(psycopg.errors.RaiseException, match="INVALID_WORKER_ID"):
        claim(db, worker="abc")
    with pytest.raises(psycopg.errors.RaiseException, match="INVALID_WORKER_ID"):
        db.execute("SELECT app_jobs.get_job(NULL)")


def test_get_job_returns_one_job_or_a_row_of_nulls(db: Conn) -> None:
    job = add(db)
    first = db.execute("SELECT * FROM app_jobs.get_job('worker-1')").fetchone()
    assert first is not None
    assert (first["id"], first["attempts"], first["locked_by"]) == (job, 1, "worker-1")
    empty = db.execute("SELECT * FROM app_jobs.get_job('worker-1')").fetchone()
    assert empty is not None
    assert empty["id"] is None


def test_racing_workers_never_get_the_same_job(connect: Connect) -> None:
    setup = connect()
    total = 600
    setup.execute(
        "SELECT app_jobs.add_jobs(json_agg(json_build_object('db_id', %s::text,"
        " 'identifier', 'race', 'payload', json_build_object('i', i))))"
        " FROM generate_series(1, %s) AS i",
        (DB_ID, total),
    )
    for i in range(20):  # some serial queues too: at most one running job each
        add(setup, "race", queue_name=f"q{i % 4}")
    workers = 6
    got: dict[str, list[int]] = {f"worker-{n}": [] for n in range(workers)}
    conns = {name: connect() for name in got}
    start = threading.Barrier(workers)
    failures: list[BaseException] = []

    def run(name: str) -> None:
        conn = conns[name]
        start.wait(timeout=30)
        try:
            while True:
                ids = claim(conn, worker=name, n=7)
                if not ids:
                    return
                got[name].extend(ids)
                # finish the queued ones so their queues free up
                conn.execute(
                    "SELECT app_jobs.complete_jobs(%s, %s::bigint[])", (name, ids)
                ).fetchall()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert failures == []
    claimed = [job for ids in got.values() for job in ids]
    duplicates = [job for job, count in Counter(claimed).items() if count > 1]
    assert duplicates == []
    assert len(claimed) == total + 20
    remaining = setup.execute("SELECT count(*) AS n FROM app_jobs.jobs").fetchone()
    assert remaining == {"n": 0}
    history = setup.execute("SELECT count(*) AS n FROM app_jobs.job_history").fetchone()
    assert history == {"n": total + 20}


def test_a_serial_queue_runs_one_job_at_a_time(db: Conn) -> None:
    a1 = add(db, queue_name="serial")
    a2 = add(db, queue_name="serial")
    free = add(db)
    b1 = add(db, queue_name="other")
    assert claim(db, "worker-1") == [a1, free, b1]
    assert claim(db, "worker-2") == []
    db.execute("SELECT app_jobs.complete_job('worker-1', %s)", (a1,))
    assert claim(db, "worker-2") == [a2]


def test_a_failed_job_frees_its_queue(db: Conn) -> None:
    a1 = add(db, queue_name="serial")
    a2 = add(db, queue_name="serial")
    assert claim(db, "worker-1") == [a1]
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, 'nope')", (a1,))
    assert claim(db, "worker-2") == [a2]


@pytest.mark.parametrize("name", ["", "default", None])
def test_empty_and_default_queue_names_mean_no_queue(db: Conn, name: str | None) -> None:
    first = add(db, queue_name=name)
    db.execute(
        "INSERT INTO app_jobs.jobs (database_id, task_identifier, queue_name)"
        " VALUES (%s, 'plain', %s)",
        (DB_ID, name),
    )
    db.execute(
        "INSERT INTO app_jobs.jobs (database_id, task_identifier) VALUES (%s, 'x')", (DB_ID,)
    )
    names = db.execute("SELECT DISTINCT queue_name FROM app_jobs.jobs").fetchall()
    assert names == [{"queue_name": None}]
    assert db.execute("SELECT count(*) AS n FROM app_jobs.job_queues").fetchone() == {"n": 0}
    # all three run in parallel
    assert len(claim(db, n=10)) == 3
    assert first


def test_queue_counts_follow_the_jobs(db: Conn) -> None:
    a = add(db, queue_name="q")
    add(db, queue_name="q")
    assert db.execute("SELECT job_count FROM app_jobs.job_queues").fetchall() == [{"job_count": 2}]
    claim(db)
    db.execute("SELECT app_jobs.complete_job('worker-1', %s)", (a,))
    assert db.execute("SELECT job_count, locked_by FROM app_jobs.job_queues").fetchall() == [
        {"job_count": 1, "locked_by": None}
    ]


def test_expired_locks_are_claimable(db: Conn) -> None:
    job = add(db, queue_name="serial")
    assert claim(db, "worker-1") == [job]
    db.execute(
        "UPDATE app_jobs.jobs SET locked_at = now() - interval '5 hours';"
        "UPDATE app_jobs.job_queues SET locked_at = now() - interval '5 hours'"
    )
    rows = db.execute(
        "SELECT id, attempts FROM app_jobs.claim_jobs('worker-2', NULL, '4 hours', 5)"
    )
    assert rows.fetchall() == [{"id": job, "attempts": 2}]
    assert db.execute("SELECT locked_by FROM app_jobs.job_queues").fetchone() == {
        "locked_by": "worker-2"
    }


def test_a_live_worker_keeps_its_lock_past_the_expiry(db: Conn) -> None:
    job = add(db)
    db.execute("SELECT app_jobs.worker_heartbeat('worker-1', '{\"pid\": 1}'::json)")
    assert claim(db, "worker-1") == [job]
    db.execute("UPDATE app_jobs.jobs SET locked_at = now() - interval '5 hours'")
    assert claim(db, "worker-2") == []
    # once the heartbeat is old, the lock expires as usual
    db.execute("UPDATE app_jobs.workers SET last_seen_at = now() - interval '5 hours'")
    assert claim(db, "worker-2") == [job]


def test_a_job_awaiting_its_callback_is_not_reclaimed_before_the_deadline(db: Conn) -> None:
    job = add(db)
    assert claim(db, "worker-1") == [job]
    db.execute(
        "SELECT app_jobs.await_callback('worker-1', %s, now() + interval '10 hours')", (job,)
    )
    db.execute("UPDATE app_jobs.jobs SET locked_at = now() - interval '5 hours'")
    assert claim(db, "worker-2") == []
