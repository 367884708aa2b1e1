"""The worker's completion and failure (0007): history rows with every column, queues freed,
other workers' jobs left alone, and a job whose id already finished once."""

from __future__ import annotations

from datetime import datetime

from sqljobs import DB_ID, Conn, add

ACTOR = "0c0ffee0-0000-4000-8000-000000000001"


def claim(db: Conn, worker: str = "worker-1", n: int = 10) -> list[int]:
    rows = db.execute(
        "SELECT id FROM app_jobs.claim_jobs_brief(%s, NULL, '4 hours', %s)", (worker, n)
    ).fetchall()
    return sorted(int(str(r["id"])) for r in rows)


def complete(
    db: Conn, ids: list[int], results: list[str] | None = None, worker: str = "worker-1"
) -> list[int]:
    rows = db.execute(
        "SELECT * FROM app_jobs.complete_jobs(%s, %s::bigint[], %s::json[])",
        (worker, ids, results),
    ).fetchall()
    return sorted(int(str(next(iter(r.values())))) for r in rows)


def history(db: Conn, job_id: int) -> dict[str, object]:
    found = db.execute("SELECT * FROM app_jobs.job_history WHERE job_id = %s", [job_id]).fetchone()
    assert found is not None
    return found


def test_a_completed_job_leaves_a_full_history_row(db: Conn) -> None:
    db.execute("SELECT set_config('jwt.claims.user_id', %s, false)", [ACTOR])
    job = add(
        db,
        "mail",
        payload='{"to": "a@example.com"}',
        job_key="welcome-1",
        priority=3,
        max_attempts=7,
        run_at="2000-01-01T00:00:00Z",
    )
    queued = db.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", [job]).fetchone()
    assert queued is not None
    assert claim(db) == [job]
    locked_at = db.execute("SELECT locked_at FROM app_jobs.jobs WHERE id = %s", [job]).fetchone()
    assert complete(db, [job], ['{"sent": true}']) == [job]
    done = history(db, job)
    assert isinstance(done["finished_at"], datetime)
    assert done == {
        "job_id": job,
        "database_id": queued["database_id"],
        "actor_id": queued["actor_id"],
        "task_identifier": "mail",
        "queue_name": None,
        "payload": {"to": "a@example.com"},
        "priority": 3,
        "key": "welcome-1",
        "status": "completed",
        "attempts": 1,
        "max_attempts": 7,
        "result": {"sent": True},
        "last_error": None,
        "worker_id": "worker-1",
        "created_at": queued["created_at"],
        "run_at": queued["run_at"],
        "started_at": locked_at and locked_at["locked_at"],
        "finished_at": done["finished_at"],
    }
    assert db.execute("SELECT count(*) AS n FROM app_jobs.jobs").fetchone() == {"n": 0}


def test_results_belong_to_their_jobs_and_none_means_no_result(db: Conn) -> None:
    a, b = add(db), add(db)
    claim(db)
    assert complete(db, [b, a], ['{"b": 1}', '{"a": 1}']) == [a, b]
    assert (history(db, a)["result"], history(db, b)["result"]) == ({"a": 1}, {"b": 1})
    c = add(db)
    claim(db)
    assert complete(db, [c]) == [c]
    assert history(db, c)["result"] is None


def test_only_the_holders_jobs_are_completed_and_the_queue_is_freed(db: Conn) -> None:
    mine = add(db, queue_name="serial")
    theirs = add(db)
    assert claim(db, "worker-1", 1) == [mine]
    assert claim(db, "worker-2") == [theirs]
    assert complete(db, [mine, theirs]) == [mine]
    assert db.execute("SELECT locked_by FROM app_jobs.jobs").fetchall() == [
        {"locked_by": "worker-2"}
    ]
    assert db.execute("SELECT count(*) AS n FROM app_jobs.job_queues").fetchone() == {"n": 0}


def test_a_job_whose_id_finished_before_replaces_its_history_row(db: Conn) -> None:
    first = add(db)
    claim(db)
    complete(db, [first], ['{"run": 1}'])
    # put back by hand with the same id, its old history row kept
    db.execute(
        "INSERT INTO app_jobs.jobs (id, database_id, task_identifier) VALUES (%s, %s, 'task')",
        (first, DB_ID),
    )
    other = add(db)
    assert claim(db) == [first, other]
    assert complete(db, [first, other], ['{"run": 2}', '{"other": 1}']) == [first, other]
    assert history(db, first)["result"] == {"run": 2}
    assert history(db, other)["result"] == {"other": 1}
    assert db.execute("SELECT count(*) AS n FROM app_jobs.job_history").fetchone() == {"n": 2}


def test_a_retried_job_is_unlocked_and_a_failed_one_is_in_history(db: Conn) -> None:
    again = add(db, max_attempts=2)
    done_for = add(db, max_attempts=1)
    claim(db)
    outcomes = db.execute(
        "SELECT job_id, outcome FROM app_jobs.fail_jobs('worker-1', %s::bigint[],"
        " ARRAY['boom', 'bust'])",
        [[again, done_for]],
    ).fetchall()
    assert sorted((r["job_id"], r["outcome"]) for r in outcomes) == [
        (again, "retry"),
        (done_for, "failed"),
    ]
    retried = db.execute(
        "SELECT locked_by, locked_at, last_error, run_at > now() AS later FROM app_jobs.jobs"
    ).fetchall()
    assert retried == [{"locked_by": None, "locked_at": None, "last_error": "boom", "later": True}]
    failed = history(db, done_for)
    assert (failed["status"], failed["last_error"], failed["worker_id"], failed["attempts"]) == (
        "failed",
        "bust",
        "worker-1",
        1,
    )
