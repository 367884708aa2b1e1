"""The worker's claim (claim_jobs_brief, 0007): the fast path when no queue or expired lock
can matter, the general path otherwise, and the same rules either way."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

from sqljobs import DB_ID, Conn, add


def brief(
    db: Conn, worker: str = "worker-1", n: int = 10, tasks: list[str] | None = None
) -> list[dict[str, object]]:
    """The worker's claim, as queries.sql runs it."""
    return db.execute(
        "SELECT id, task_identifier, payload::text AS payload, database_id::text AS database_id,"
        " actor_id::text AS actor_id, attempts, max_attempts"
        " FROM app_jobs.claim_jobs_brief(%s, %s, '4 hours', %s)",
        (worker, tasks, n),
    ).fetchall()


def ids(rows: list[dict[str, object]]) -> list[int]:
    return sorted(int(str(r["id"])) for r in rows)


def row(db: Conn, job_id: int) -> dict[str, object]:
    found = db.execute("SELECT * FROM app_jobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return found


def test_the_claim_returns_what_the_worker_dispatches_and_locks_the_job(db: Conn) -> None:
    job = add(db, "mail", payload='{"to": "a@example.com"}', max_attempts=3)
    before = row(db, job)
    (claimed,) = brief(db)
    assert claimed == {
        "id": job,
        "task_identifier": "mail",
        "payload": '{"to": "a@example.com"}',
        "database_id": DB_ID,
        "actor_id": None,
        "attempts": 1,
        "max_attempts": 3,
    }
    after = row(db, job)
    assert (after["locked_by"], after["attempts"], after["locked_until"]) == ("worker-1", 1, None)
    assert after["locked_at"] is not None
    assert after["created_at"] == before["created_at"]
    assert isinstance(after["updated_at"], datetime)
    assert isinstance(before["updated_at"], datetime)
    assert after["updated_at"] > before["updated_at"]


def test_priorities_then_run_at_decide_what_a_small_claim_takes(db: Conn) -> None:
    late = add(db, run_at="2000-01-02T00:00:00Z")
    early = add(db, run_at="2000-01-01T00:00:00Z")
    urgent = add(db, priority=-5, run_at="2000-01-03T00:00:00Z")
    add(db, run_at="2999-01-01T00:00:00Z")  # not yet
    assert ids(brief(db, n=1)) == [urgent]
    assert ids(brief(db, n=1)) == [early]
    assert ids(brief(db, n=5)) == [late]
    assert brief(db) == []


def test_only_the_tasks_asked_for_are_claimed(db: Conn) -> None:
    mail = add(db, "mail")
    other = add(db, "other")
    assert ids(brief(db, tasks=["mail", "nothing"])) == [mail]
    assert ids(brief(db)) == [other]


def test_exhausted_and_running_jobs_are_not_claimed_again(db: Conn) -> None:
    job = add(db, max_attempts=1)
    assert ids(brief(db)) == [job]
    assert brief(db, "worker-2") == []
    db.execute("UPDATE app_jobs.jobs SET locked_at = NULL, locked_by = NULL WHERE id = %s", [job])
    assert brief(db, "worker-2") == []  # its one attempt is used


def test_with_a_named_queue_present_the_queue_runs_one_job_at_a_time(db: Conn) -> None:
    a1 = add(db, queue_name="serial")
    a2 = add(db, queue_name="serial")
    free = add(db)
    assert ids(brief(db, "worker-1")) == sorted([a1, free])
    assert brief(db, "worker-2") == []
    db.execute("SELECT app_jobs.complete_jobs('worker-1', ARRAY[%s]::bigint[])", [a1]).fetchall()
    assert ids(brief(db, "worker-2")) == [a2]
    # the queue is gone with its last job: the fast path again
    db.execute("SELECT app_jobs.complete_jobs('worker-2', ARRAY[%s]::bigint[])", [a2]).fetchall()
    assert db.execute("SELECT count(*) AS n FROM app_jobs.job_queues").fetchone() == {"n": 0}
    again = add(db)
    assert ids(brief(db)) == [again]


def test_an_expired_lock_is_taken_over_and_a_fresh_one_is_not(db: Conn) -> None:
    stale = add(db)
    fresh = add(db)
    assert ids(brief(db, "worker-1")) == sorted([stale, fresh])
    db.execute(
        "UPDATE app_jobs.jobs SET locked_at = now() - interval '5 hours' WHERE id = %s", [stale]
    )
    waiting = add(db)
    taken = brief(db, "worker-2")
    assert ids(taken) == sorted([stale, waiting])
    assert {int(str(r["id"])): r["attempts"] for r in taken} == {stale: 2, waiting: 1}
    assert row(db, fresh)["locked_by"] == "worker-1"


def test_a_live_worker_or_a_pending_callback_keeps_an_old_lock(db: Conn) -> None:
    running = add(db)
    awaiting = add(db)
    db.execute("SELECT app_jobs.worker_heartbeat('worker-1', NULL)")
    assert ids(brief(db, "worker-1")) == sorted([running, awaiting])
    db.execute(
        "SELECT app_jobs.await_callback('worker-1', %s, now() + interval '9 hours')", [awaiting]
    )
    db.execute("UPDATE app_jobs.jobs SET locked_at = now() - interval '5 hours'")
    other = add(db)
    assert ids(brief(db, "worker-2")) == [other]
    db.execute("UPDATE app_jobs.workers SET last_seen_at = now() - interval '5 hours'")
    assert ids(brief(db, "worker-2")) == [running]


def test_claim_jobs_keeps_returning_whole_rows_in_claim_order(db: Conn) -> None:
    second = add(db, run_at="2000-01-02T00:00:00Z")
    first = add(db, run_at="2000-01-01T00:00:00Z")
    claim = "SELECT * FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 5)"
    rows = db.execute(claim).fetchall()
    assert [r["id"] for r in rows] == [first, second]
    assert all(r["locked_by"] == "worker-1" and r["attempts"] == 1 for r in rows)


def test_updated_at_moves_forward_on_every_change_even_within_one_transaction(db: Conn) -> None:
    job = add(db)
    seen = [row(db, job)["updated_at"]]
    with db.transaction():
        brief(db)  # set by the claim itself
        seen.append(row(db, job)["updated_at"])
        db.execute(
            "SELECT * FROM app_jobs.fail_jobs('worker-1', ARRAY[%s]::bigint[], ARRAY['x'])", [job]
        ).fetchall()  # set by the retry itself
        seen.append(row(db, job)["updated_at"])
        db.execute("UPDATE app_jobs.jobs SET run_at = now() WHERE id = %s", [job])  # the trigger
        seen.append(row(db, job)["updated_at"])
        brief(db)
        seen.append(row(db, job)["updated_at"])
    stamps = [s for s in seen if isinstance(s, datetime)]
    assert len(stamps) == 5
    gaps = [later - earlier for earlier, later in pairwise(stamps)]
    assert all(gap >= timedelta(milliseconds=1) for gap in gaps), gaps


def test_the_row_trigger_still_guards_any_other_update(db: Conn) -> None:
    job = add(db)
    before = row(db, job)
    db.execute(
        "UPDATE app_jobs.jobs SET created_at = '2000-01-01', updated_at = '2000-01-01',"
        " queue_name = 'default' WHERE id = %s",
        [job],
    )
    after = row(db, job)
    assert after["created_at"] == before["created_at"]
    assert isinstance(after["updated_at"], datetime)
    assert isinstance(before["updated_at"], datetime)
    assert after["updated_at"] > before["updated_at"]
    assert after["queue_name"] is None
    db.execute("UPDATE app_jobs.jobs SET updated_at = '2999-01-01' WHERE id = %s", [job])
    assert row(db, job)["updated_at"] != datetime.fromisoformat("2999-01-01T00:00:00+00:00")
