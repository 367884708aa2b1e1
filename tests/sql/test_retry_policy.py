"""The retry policy: the default delay after a failed attempt, and per-task overrides.

Each delay is measured as a user sees it: the failed job's `run_at` minus the time of the
failure (one transaction, so `now()` is the same in both statements).
"""

from __future__ import annotations

import math
from datetime import timedelta

import psycopg
import pytest
from sqljobs import Conn, add


def claim_at_attempt(db: Conn, job_ids: list[int], attempt: int) -> None:
    """Make ``job_ids`` runnable with ``attempt - 1`` attempts made, then claim them."""
    db.execute(
        "UPDATE app_jobs.jobs SET run_at = now(), attempts = %s - 1 WHERE id = ANY(%s)",
        (attempt, job_ids),
    )
    rows = db.execute("SELECT id FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 100)")
    assert sorted(int(str(r["id"])) for r in rows.fetchall()) == sorted(job_ids)


def fail_all(db: Conn, job_ids: list[int]) -> dict[int, float]:
    """Fail ``job_ids`` with one ``fail_jobs`` call; each job's delay in seconds."""
    with db.transaction():
        now = db.execute("SELECT now() AS now").fetchone()
        outcomes = db.execute(
            "SELECT * FROM app_jobs.fail_jobs('worker-1', %s, %s)",
            (job_ids, ["boom"] * len(job_ids)),
        ).fetchall()
    assert now is not None
    assert sorted((int(str(o["job_id"])), o["outcome"]) for o in outcomes) == [
        (i, "retry") for i in sorted(job_ids)
    ]
    return delays_since(db, job_ids, now["now"])


def delays_since(db: Conn, job_ids: list[int], since: object) -> dict[int, float]:
    rows = db.execute(
        "SELECT id, extract(epoch FROM run_at - %s::timestamptz)::float8 AS delay"
        " FROM app_jobs.jobs WHERE id = ANY(%s)",
        (since, job_ids),
    ).fetchall()
    return {int(str(r["id"])): float(str(r["delay"])) for r in rows}


def set_policy(db: Conn, task: str, initial: str, factor: float, cap: str) -> None:
    """What an operator runs: one statement sets (or replaces) a task's policy."""
    db.execute(
        "INSERT INTO app_jobs.task_retry_policies"
        " (task_identifier, initial_delay, factor, max_delay) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (task_identifier) DO UPDATE SET initial_delay = EXCLUDED.initial_delay,"
        " factor = EXCLUDED.factor, max_delay = EXCLUDED.max_delay",
        (task, initial, factor, cap),
    )


def test_default_delays_are_unchanged_for_attempts_1_to_12(db: Conn) -> None:
    job_id = add(db)
    for attempt in range(1, 13):
        claim_at_attempt(db, [job_id], attempt)
        delay = fail_all(db, [job_id])[job_id]
        assert delay == pytest.approx(math.exp(min(attempt, 10)), abs=1e-5), attempt
        direct = db.execute("SELECT app_jobs.retry_delay(%s) AS d", (attempt,)).fetchone()
        assert direct is not None
        assert direct["d"] == row_delay(delay)


def row_delay(seconds: float) -> timedelta:
    return timedelta(microseconds=round(seconds * 1_000_000))


def test_a_task_policy_applies_to_that_task_only(db: Conn) -> None:
    set_policy(db, "slow-task", "30 seconds", 3, "1 hour")
    slow, other = add(db, "slow-task"), add(db, "other-task")
    for attempt in (1, 2, 3):
        claim_at_attempt(db, [slow, other], attempt)
        delays = fail_all(db, [slow, other])
        assert delays[slow] == pytest.approx(30 * 3 ** (attempt - 1), abs=1e-5), attempt
        assert delays[other] == pytest.approx(math.exp(attempt), abs=1e-5), attempt


def test_the_policy_never_exceeds_its_cap_and_survives_any_attempt_count(db: Conn) -> None:
    set_policy(db, "capped", "1 second", 2, "1 minute")
    job_id = add(db, "capped", max_attempts=1_000_000)
    expected = {1: 1, 6: 32, 7: 60, 8: 60, 40: 60, 999_999: 60}
    for attempt, seconds in expected.items():
        claim_at_attempt(db, [job_id], attempt)
        assert fail_all(db, [job_id])[job_id] == pytest.approx(seconds, abs=1e-5), attempt
    huge = db.execute(
        "SELECT app_jobs.retry_delay('capped', 2147483647) AS d,"
        " app_jobs.retry_delay('not-configured', 2147483647) AS dflt"
    ).fetchone()
    assert huge == {"d": timedelta(minutes=1), "dflt": row_delay(math.exp(10))}


def test_a_fixed_delay_and_an_immediate_retry(db: Conn) -> None:
    set_policy(db, "fixed", "5 minutes", 1, "5 minutes")
    set_policy(db, "at-once", "0 seconds", 2, "0 seconds")
    fixed, at_once = add(db, "fixed"), add(db, "at-once")
    for attempt in (1, 4):
        claim_at_attempt(db, [fixed, at_once], attempt)
        delays = fail_all(db, [fixed, at_once])
        assert delays == {fixed: pytest.approx(300, abs=1e-5), at_once: 0}


def test_changing_and_removing_a_policy_takes_effect_at_the_next_failure(db: Conn) -> None:
    job_id = add(db, "tuned")
    set_policy(db, "tuned", "10 seconds", 2, "1 hour")
    claim_at_attempt(db, [job_id], 2)
    assert fail_all(db, [job_id])[job_id] == pytest.approx(20, abs=1e-5)
    db.execute("UPDATE app_jobs.task_retry_policies SET factor = 5 WHERE task_identifier = 'tuned'")
    claim_at_attempt(db, [job_id], 2)
    assert fail_all(db, [job_id])[job_id] == pytest.approx(50, abs=1e-5)
    db.execute("DELETE FROM app_jobs.task_retry_policies WHERE task_identifier = 'tuned'")
    claim_at_attempt(db, [job_id], 2)
    assert fail_all(db, [job_id])[job_id] == pytest.approx(math.exp(2), abs=1e-5)


def test_fail_job_uses_the_task_policy(db: Conn) -> None:
    set_policy(db, "ref-task", "2 minutes", 2, "1 hour")
    job_id = add(db, "ref-task")
    claim_at_attempt(db, [job_id], 3)
    with db.transaction():
        now = db.execute("SELECT now() AS now").fetchone()
        row = db.execute(
            "SELECT * FROM app_jobs.fail_job('worker-1', %s, 'boom')", (job_id,)
        ).fetchone()
    assert now is not None
    assert row is not None
    assert (row["locked_by"], row["last_error"]) == (None, "boom")
    assert row["run_at"] - now["now"] == timedelta(minutes=8)  # type: ignore[operator]


def test_a_missed_callback_deadline_retries_with_the_task_policy(db: Conn) -> None:
    set_policy(db, "callback-task", "45 seconds", 2, "1 hour")
    waiting, plain = add(db, "callback-task"), add(db, "plain-task")
    claim_at_attempt(db, [waiting, plain], 2)
    for job_id in (waiting, plain):
        db.execute(
            "SELECT app_jobs.await_callback('worker-1', %s, now() - interval '1 second')",
            (job_id,),
        )
    with db.transaction():
        now = db.execute("SELECT now() AS now").fetchone()
        expired = db.execute("SELECT * FROM app_jobs.expire_callback_deadlines()").fetchall()
    assert now is not None
    assert sorted((int(str(r["job_id"])), r["outcome"]) for r in expired) == sorted(
        [(waiting, "retry"), (plain, "retry")]
    )
    delays = delays_since(db, [waiting, plain], now["now"])
    assert delays[waiting] == pytest.approx(90, abs=1e-5)
    assert delays[plain] == pytest.approx(math.exp(2), abs=1e-5)


@pytest.mark.parametrize(
    ("initial", "factor", "cap", "constraint"),
    [
        ("-1 second", 2, "1 minute", "task_retry_policies_initial_delay_check"),
        ("1 second", 0.5, "1 minute", "task_retry_policies_factor_check"),
        ("1 minute", 2, "1 second", "task_retry_policies_max_delay_check"),
        ("1 second", 2, "2 years", "task_retry_policies_max_delay_check"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_rule(
    db: Conn, initial: str, factor: float, cap: str, constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        set_policy(db, "bad", initial, factor, cap)
    assert db.execute("SELECT count(*) AS n FROM app_jobs.task_retry_policies").fetchone() == {
        "n": 0
    }


def test_administrator_sets_policies_and_fails_jobs_under_them(db: Conn) -> None:
    db.execute("SET ROLE administrator")
    set_policy(db, "admin-set", "1 second", 2, "1 minute")
    row = db.execute("SELECT app_jobs.retry_delay('admin-set', 3) AS d").fetchone()
    assert row == {"d": timedelta(seconds=4)}
    job_id = add(db, "admin-set")
    claim_at_attempt(db, [job_id], 3)
    assert fail_all(db, [job_id])[job_id] == pytest.approx(4, abs=1e-5)
