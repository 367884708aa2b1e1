"""Finishing jobs: complete, fail, backoff, exhaustion, history, callbacks, workers, status."""

from __future__ import annotations

import math
from datetime import timedelta

import psycopg
import pytest
from sqljobs import Conn, add


def claim(db: Conn, worker: str = "worker-1", n: int = 10) -> list[int]:
    rows = db.execute(
        "SELECT id FROM app_jobs.claim_jobs(%s, NULL, '4 hours', %s)", (worker, n)
    ).fetchall()
    return [int(str(r["id"])) for r in rows]


def job(db: Conn, job_id: int) -> dict[str, object] | None:
    return db.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", (job_id,)).fetchone()


def history(db: Conn, job_id: int) -> dict[str, object] | None:
    return db.execute("SELECT * FROM app_jobs.job_history WHERE job_id = %s", (job_id,)).fetchone()


def test_complete_job_moves_the_job_to_history(db: Conn) -> None:
    job_id = add(db, payload='{"p": 1}', queue_name="serial")
    claim(db)
    row = db.execute("SELECT * FROM app_jobs.complete_job('worker-1', %s)", (job_id,)).fetchone()
    assert row is not None
    assert row["id"] == job_id
    assert job(db, job_id) is None
    done = history(db, job_id)
    assert done is not None
    assert (done["status"], done["attempts"], done["worker_id"], done["payload"]) == (
        "completed",
        1,
        "worker-1",
        {"p": 1},
    )
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert db.execute("SELECT count(*) AS n FROM app_jobs.job_queues").fetchone() == {"n": 0}


def test_complete_job_checks_the_worker(db: Conn) -> None:
    job_id = add(db)
    claim(db, "worker-1")
    row = db.execute("SELECT * FROM app_jobs.complete_job('worker-2', %s)", (job_id,)).fetchone()
    assert row is not None
    assert row["id"] is None
    still = job(db, job_id)
    assert still is not None
    assert still["locked_by"] == "worker-1"
    assert history(db, job_id) is None


def test_complete_jobs_stores_each_result_and_skips_other_workers_jobs(db: Conn) -> None:
    a, b, c = add(db), add(db), add(db)
    assert claim(db, "worker-1", n=2) == [a, b]
    assert claim(db, "worker-2") == [c]
    done = db.execute(
        "SELECT * FROM app_jobs.complete_jobs('worker-1', %s::bigint[], %s::json[])",
        ([b, a, c], ['{"r": "b"}', None, '{"r": "c"}']),
    ).fetchall()
    assert sorted(int(str(r["complete_jobs"])) for r in done) == [a, b]
    rows = db.execute("SELECT job_id, result FROM app_jobs.job_history ORDER BY job_id")
    assert rows.fetchall() == [{"job_id": a, "result": None}, {"job_id": b, "result": {"r": "b"}}]
    assert job(db, c) is not None


def test_fail_job_retries_with_exponential_backoff(db: Conn) -> None:
    job_id = add(db)
    for attempt in (1, 2, 3, 11, 12):
        db.execute("UPDATE app_jobs.jobs SET run_at = now(), attempts = %s - 1", (attempt,))
        assert claim(db) == [job_id]
        with db.transaction():  # one transaction: now() is the same in both statements
            before = db.execute("SELECT now() AS now").fetchone()
            row = db.execute(
                "SELECT * FROM app_jobs.fail_job('worker-1', %s, 'boom')", (job_id,)
            ).fetchone()
        assert before is not None
        assert row is not None
        assert (row["attempts"], row["locked_by"], row["locked_at"], row["last_error"]) == (
            attempt,
            None,
            None,
            "boom",
        )
        delay = row["run_at"] - before["now"]  # type: ignore[operator]
        expected = math.exp(min(attempt, 10))
        assert abs(delay.total_seconds() - expected) < 1e-5, (attempt, delay)


def test_fail_job_with_a_null_message_still_fails(db: Conn) -> None:
    job_id = add(db)
    claim(db)
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, NULL)", (job_id,))
    row = job(db, job_id)
    assert row is not None
    assert (row["locked_by"], row["last_error"]) == (None, "unknown error")


def test_fail_job_checks_the_worker(db: Conn) -> None:
    job_id = add(db)
    claim(db, "worker-1")
    db.execute("SELECT app_jobs.fail_job('worker-2', %s, 'not mine')", (job_id,))
    row = job(db, job_id)
    assert row is not None
    assert (row["locked_by"], row["last_error"]) == ("worker-1", None)


def test_an_exhausted_job_leaves_the_queue_as_failed_with_its_error(db: Conn) -> None:
    job_id = add(db, max_attempts=2, queue_name="serial")
    claim(db)
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, 'first')", (job_id,))
    db.execute("UPDATE app_jobs.jobs SET run_at = now()")
    claim(db)
    row = db.execute("SELECT * FROM app_jobs.fail_job('worker-1', %s, 'second')", (job_id,))
    assert row.fetchone() is not None
    assert job(db, job_id) is None
    dead = history(db, job_id)
    assert dead is not None
    assert (dead["status"], dead["attempts"], dead["last_error"], dead["worker_id"]) == (
        "failed",
        2,
        "second",
        "worker-1",
    )
    assert db.execute("SELECT count(*) AS n FROM app_jobs.job_queues").fetchone() == {"n": 0}


def test_fail_jobs_reports_retry_or_failed_per_job(db: Conn) -> None:
    retry, permanent, last, foreign = add(db), add(db), add(db, max_attempts=1), add(db)
    claim(db, "worker-1", n=3)
    claim(db, "worker-2")
    rows = db.execute(
        "SELECT * FROM app_jobs.fail_jobs('worker-1', %s::bigint[], %s::text[], %s::boolean[])",
        ([retry, permanent, last, foreign], ["r", "p", None, "x"], [True, False, None, True]),
    ).fetchall()
    assert sorted((r["job_id"], r["outcome"]) for r in rows) == sorted(
        [(retry, "retry"), (permanent, "failed"), (last, "failed")]
    )
    failed = db.execute(
        "SELECT job_id, last_error FROM app_jobs.job_history ORDER BY job_id"
    ).fetchall()
    assert failed == [
        {"job_id": permanent, "last_error": "p"},
        {"job_id": last, "last_error": "unknown error"},
    ]


def test_release_jobs_unlocks_without_counting_the_attempt(db: Conn) -> None:
    a = add(db, queue_name="serial")
    b = add(db)
    claim(db, "worker-1")
    db.execute("SELECT app_jobs.release_jobs('worker-1')")
    rows = db.execute("SELECT id, attempts, locked_by FROM app_jobs.jobs ORDER BY id").fetchall()
    assert rows == [
        {"id": a, "attempts": 0, "locked_by": None},
        {"id": b, "attempts": 0, "locked_by": None},
    ]
    assert db.execute("SELECT locked_by FROM app_jobs.job_queues").fetchall() == [
        {"locked_by": None}
    ]
    assert claim(db, "worker-2") == [a, b]


def test_await_callback_and_expired_deadlines(db: Conn) -> None:
    waiting, late = add(db), add(db, max_attempts=1)
    claim(db)
    ok = db.execute(
        "SELECT app_jobs.await_callback('worker-1', %s, now() + interval '1 hour') AS ok",
        (waiting,),
    ).fetchone()
    assert ok == {"ok": True}
    wrong = db.execute(
        "SELECT app_jobs.await_callback('worker-2', %s, now()) AS ok", (late,)
    ).fetchone()
    assert wrong == {"ok": False}
    db.execute(
        "SELECT app_jobs.await_callback('worker-1', %s, now() - interval '1 second')", (late,)
    )
    expired = db.execute("SELECT * FROM app_jobs.expire_callback_deadlines()").fetchall()
    assert expired == [{"job_id": late, "outcome": "failed"}]
    dead = history(db, late)
    assert dead is not None
    assert dead["last_error"] == "no callback before the deadline"
    row = job(db, waiting)
    assert row is not None
    assert row["locked_by"] == "worker-1"
    assert row["locked_until"] is not None
    # a retryable job whose deadline passes goes back to the queue with the error
    db.execute("UPDATE app_jobs.jobs SET locked_until = now() - interval '1 second'")
    assert db.execute("SELECT * FROM app_jobs.expire_callback_deadlines()").fetchall() == [
        {"job_id": waiting, "outcome": "retry"}
    ]
    row = job(db, waiting)
    assert row is not None
    assert (row["locked_by"], row["locked_until"], row["last_error"]) == (
        None,
        None,
        "no callback before the deadline",
    )


def test_report_progress_is_visible_in_job_status(db: Conn) -> None:
    job_id = add(db)
    claim(db)
    hit = db.execute(
        "SELECT app_jobs.report_progress('worker-1', %s, 140, 'almost') AS ok", (job_id,)
    ).fetchone()
    assert hit == {"ok": True}
    miss = db.execute(
        "SELECT app_jobs.report_progress('worker-2', %s, 10, 'x') AS ok", (job_id,)
    ).fetchone()
    assert miss == {"ok": False}
    status = db.execute("SELECT * FROM app_jobs.job_status(%s)", (job_id,)).fetchone()
    assert status is not None
    assert (status["status"], status["progress"], status["progress_message"]) == (
        "running",
        100,
        "almost",
    )


def test_job_status_through_the_life_of_a_job(db: Conn) -> None:
    job_id = add(db)

    def status() -> object:
        row = db.execute("SELECT * FROM app_jobs.job_status(%s)", (job_id,)).fetchone()
        return None if row is None else row["status"]

    assert status() == "queued"
    claim(db)
    assert status() == "running"
    db.execute(
        "SELECT app_jobs.complete_jobs('worker-1', ARRAY[%s]::bigint[], ARRAY['[1]']::json[])",
        (job_id,),
    )
    assert status() == "completed"
    row = db.execute("SELECT result, finished_at FROM app_jobs.job_status(%s)", (job_id,))
    done = row.fetchone()
    assert done is not None
    assert done["result"] == [1]
    assert done["finished_at"] is not None
    assert db.execute("SELECT * FROM app_jobs.job_status(-1)").fetchall() == []


def test_retry_failed_job_brings_a_dead_job_back(db: Conn) -> None:
    job_id = add(db, payload='{"k": 1}', max_attempts=1)
    claim(db)
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, 'dead')", (job_id,))
    assert db.execute("SELECT status FROM app_jobs.job_status(%s)", (job_id,)).fetchone() == {
        "status": "failed"
    }
    row = db.execute("SELECT * FROM app_jobs.retry_failed_job(%s)", (job_id,)).fetchone()
    assert row is not None
    assert (row["id"], row["attempts"], row["payload"]) == (job_id, 0, {"k": 1})
    assert history(db, job_id) is None
    assert claim(db) == [job_id]
    with pytest.raises(psycopg.errors.NoDataFound, match="not a failed job"):
        db.execute("SELECT app_jobs.retry_failed_job(%s)", (job_id,))


def test_prune_job_history_deletes_old_rows_only(db: Conn) -> None:
    old, new = add(db), add(db)
    claim(db)
    db.execute("SELECT app_jobs.complete_jobs('worker-1', %s::bigint[])", ([old, new],))
    db.execute(
        "UPDATE app_jobs.job_history SET finished_at = now() - interval '8 days' WHERE job_id = %s",
        (old,),
    )
    assert db.execute("SELECT app_jobs.prune_job_history() AS n").fetchone() == {"n": 1}
    assert db.execute("SELECT job_id FROM app_jobs.job_history").fetchall() == [{"job_id": new}]
    assert db.execute(
        "SELECT app_jobs.prune_job_history(interval '0 seconds') AS n"
    ).fetchone() == {"n": 1}


def test_heartbeat_and_rescue_of_dead_workers(db: Conn) -> None:
    alive, retried, exhausted, awaiting = add(db), add(db), add(db, max_attempts=1), add(db)
    db.execute("SELECT app_jobs.worker_heartbeat('worker-live', '{\"v\": 1}'::json)")
    db.execute("SELECT app_jobs.worker_heartbeat('worker-dead')")
    assert claim(db, "worker-live", n=1) == [alive]
    assert claim(db, "worker-dead", n=3) == [retried, exhausted, awaiting]
    db.execute(
        "SELECT app_jobs.await_callback('worker-dead', %s, now() + interval '1 hour')",
        (awaiting,),
    )
    db.execute("SELECT app_jobs.worker_heartbeat('worker-live')")
    db.execute(
        "UPDATE app_jobs.workers SET last_seen_at = now() - interval '1 minute'"
        " WHERE worker_id = 'worker-dead'"
    )
    info = db.execute("SELECT info FROM app_jobs.workers WHERE worker_id = 'worker-live'")
    assert info.fetchone() == {"info": {"v": 1}}  # a heartbeat without info keeps it
    rescued = db.execute(
        "SELECT * FROM app_jobs.rescue_dead_workers(interval '30 seconds')"
    ).fetchall()
    assert sorted((r["job_id"], r["worker_id"], r["outcome"]) for r in rescued) == sorted(
        [(retried, "worker-dead", "retry"), (exhausted, "worker-dead", "failed")]
    )
    row = job(db, retried)
    assert row is not None
    assert (row["locked_by"], row["last_error"]) == (None, "worker worker-dead stopped responding")
    dead = history(db, exhausted)
    assert dead is not None
    assert dead["status"] == "failed"
    still = job(db, awaiting)
    assert still is not None
    assert still["locked_by"] == "worker-dead"
    workers = db.execute("SELECT worker_id FROM app_jobs.workers").fetchall()
    assert workers == [{"worker_id": "worker-live"}]
    assert (
        db.execute("SELECT * FROM app_jobs.rescue_dead_workers(interval '30 seconds')").fetchall()
        == []
    )


def test_unregister_worker_releases_its_jobs_and_forgets_it(db: Conn) -> None:
    a, b = add(db, queue_name="serial"), add(db)
    db.execute("SELECT app_jobs.worker_heartbeat('worker-1')")
    claim(db)
    db.execute("SELECT app_jobs.await_callback('worker-1', %s, now() + interval '1 hour')", (b,))
    db.execute("SELECT app_jobs.unregister_worker('worker-1')")
    assert db.execute("SELECT count(*) AS n FROM app_jobs.workers").fetchone() == {"n": 0}
    rows = db.execute("SELECT id, locked_by, attempts FROM app_jobs.jobs ORDER BY id").fetchall()
    assert rows == [
        {"id": a, "locked_by": None, "attempts": 0},
        {"id": b, "locked_by": "worker-1", "attempts": 1},  # awaits its callback
    ]
    assert claim(db, "worker-2") == [a]


def test_reference_batch_functions(db: Conn) -> None:
    a, b, c, running = add(db), add(db), add(db), add(db, priority=-1)
    assert claim(db, n=1) == [running]
    moved = db.execute(
        "SELECT id, run_at, priority FROM app_jobs.reschedule_jobs(%s::bigint[],"
        " run_at := '2999-01-01T00:00:00Z', priority := 7)",
        ([a, running],),
    ).fetchall()
    assert [(r["id"], r["priority"]) for r in moved] == [(a, 7)]
    failed = db.execute(
        "SELECT id, last_error FROM app_jobs.permanently_fail_jobs(%s::bigint[])", ([b],)
    ).fetchall()
    assert failed == [{"id": b, "last_error": "Manually marked as failed"}]
    done = db.execute("SELECT id FROM app_jobs.complete_jobs(%s::bigint[])", ([c, running],))
    assert done.fetchall() == [{"id": c}]
    statuses = db.execute(
        "SELECT job_id, status FROM app_jobs.job_history ORDER BY job_id"
    ).fetchall()
    assert statuses == [{"job_id": b, "status": "failed"}, {"job_id": c, "status": "completed"}]
    assert claim(db) == []
    later = job(db, a)
    assert later is not None
    assert later["run_at"] - later["created_at"] > timedelta(days=300)  # type: ignore[operator]
