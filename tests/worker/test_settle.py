"""The settler writes gathered outcomes in batches against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobservice.claimed_job import ClaimedJob
from jobservice.metrics import Metrics
from jobservice.queries import queries_for
from jobservice.settle import Settler
from jobservice.store_postgres import PostgresStore

DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
WORKER = "settle-test"


async def _claimed(conninfo: str, n: int) -> list[ClaimedJob]:
    queries = queries_for("app_jobs")
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for i in range(n):
            await conn.execute(
                "SELECT app_jobs.add_job(%s::uuid, 'settle', json_build_object('n', %s::int))",
                [DB, i],
            )
        cur = await conn.execute(
            queries.claim_jobs,
            {"worker_id": WORKER, "tasks": None, "job_expiry": 14400, "max_jobs": n},
        )
        return [ClaimedJob.from_row(row) for row in await cur.fetchall()]


async def _rows(conninfo: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(query)
        return await cur.fetchall()


def _settler(pool: AsyncConnectionPool[Any], *, batch: int = 100, delay: float = 0) -> Settler:
    return Settler(
        PostgresStore(pool, "app_jobs", worker_id=WORKER, metrics=Metrics()),
        batch=batch,
        delay=delay,
        callback_deadline=60,
    )


async def test_one_flush_completes_retries_and_fails_jobs(db_conninfo: str) -> None:
    jobs = await _claimed(db_conninfo, 4)
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool)
        settler.completed(jobs[0], '{"sent": 1}')
        settler.completed(jobs[1], "not json")  # refused as a result: completed without it
        settler.failed(jobs[2], "try again", retryable=True)
        settler.failed(jobs[3], "never", retryable=False)
        assert settler.pending == 4
        assert settler.unwritten == {job.id for job in jobs}
        await settler.flush_once()

    assert settler.pending == 0
    assert settler.unwritten == set()
    assert not settler.take_refusal()
    history = await _rows(
        db_conninfo, "SELECT job_id, status, result, last_error FROM app_jobs.job_history"
    )
    assert sorted(history) == sorted(
        [
            (jobs[0].id, "completed", None, None),
            (jobs[1].id, "completed", None, None),
            (jobs[3].id, "failed", None, "never"),
        ]
    )
    queued = await _rows(db_conninfo, "SELECT id, locked_by, last_error FROM app_jobs.jobs")
    assert queued == [(jobs[2].id, None, "try again")]


async def test_an_outcome_the_database_refuses_is_given_up_for_adoption(db_conninfo: str) -> None:
    [job] = await _claimed(db_conninfo, 1)
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool)
        settler.failed(job, "a NUL \x00 byte PostgreSQL text cannot hold", retryable=True)
        await settler.flush_once()

    assert settler.take_refusal()  # the worker adopts the job again
    assert not settler.take_refusal()
    assert settler.unwritten == set()
    locked = await _rows(db_conninfo, "SELECT locked_by FROM app_jobs.jobs")
    assert locked == [(WORKER,)]


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def _steal(conninfo: str, job_id: int, holder: str) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(
            "UPDATE app_jobs.jobs SET locked_by = %s WHERE id = %s", [holder, job_id]
        )


async def test_outcomes_of_jobs_taken_away_are_counted_apart_and_logged_with_the_holder(
    db_conninfo: str, caplog: Any
) -> None:
    jobs = await _claimed(db_conninfo, 4)
    await _steal(db_conninfo, jobs[1].id, "rescuer-worker")
    await _steal(db_conninfo, jobs[3].id, "rescuer-worker")
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool)
        metrics = settler.metrics
        settler.completed(jobs[0], None)
        settler.completed(jobs[1], None)
        settler.failed(jobs[2], "boom", retryable=False)
        settler.failed(jobs[3], "boom", retryable=False)
        with caplog.at_level("WARNING", logger="jobservice.store"):
            await settler.flush_once()

    assert _count(metrics, "jobs_completed_total", task="settle") == 1
    assert _count(metrics, "jobs_failed_total", task="settle") == 1
    assert _count(metrics, "jobs_outcomes_refused_total", task="settle", outcome="completed") == 1
    assert _count(metrics, "jobs_outcomes_refused_total", task="settle", outcome="failed") == 1
    refused = [r for r in caplog.records if getattr(r, "action", None) == "outcome_refused"]
    assert sorted((r.job_id, r.outcome, r.holder) for r in refused) == sorted(
        [(jobs[1].id, "completed", "rescuer-worker"), (jobs[3].id, "failed", "rescuer-worker")]
    )
    assert all("locked by rescuer-worker" in r.getMessage() for r in refused)
    still = await _rows(db_conninfo, "SELECT id, locked_by FROM app_jobs.jobs ORDER BY id")
    assert still == [(jobs[1].id, "rescuer-worker"), (jobs[3].id, "rescuer-worker")]


async def test_an_outcome_already_written_by_a_lost_reply_is_not_refused(
    db_conninfo: str, caplog: Any
) -> None:
    jobs = await _claimed(db_conninfo, 2)
    async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as conn:
        # The first statement committed but its reply was lost: the retry finds the work done.
        await conn.execute("SELECT app_jobs.complete_jobs(%s, %s)", [WORKER, [jobs[0].id]])
        await conn.execute(
            "SELECT app_jobs.fail_jobs(%s, %s, %s)", [WORKER, [jobs[1].id], ["try later"]]
        )
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool)
        settler.completed(jobs[0], None)
        settler.failed(jobs[1], "try later", retryable=True)
        with caplog.at_level("WARNING", logger="jobservice.store"):
            await settler.flush_once()
    assert _count(settler.metrics, "jobs_completed_total", task="settle") == 1
    assert (
        _count(settler.metrics, "jobs_outcomes_refused_total", task="settle", outcome="failed") == 0
    )
    assert not [r for r in caplog.records if getattr(r, "action", None) == "outcome_refused"]


async def test_unreachable_jobs_are_released_with_their_attempt_back_after_a_delay(
    db_conninfo: str,
) -> None:
    jobs = await _claimed(db_conninfo, 3)
    await _steal(db_conninfo, jobs[2].id, "someone-else")
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool)
        settler.unreachable(jobs[0], 30.0, "request to http://fn failed: connection refused")
        settler.unreachable(jobs[1], 0.0, None)
        settler.unreachable(jobs[2], 0.0, None)
        await settler.flush_once()
    rows = await _rows(
        db_conninfo,
        "SELECT id, locked_by, attempts, last_error, run_at > now() + interval '20 seconds'"
        " FROM app_jobs.jobs ORDER BY id",
    )
    assert rows == [
        (jobs[0].id, None, 0, "request to http://fn failed: connection refused", True),
        (jobs[1].id, None, 0, None, False),
        (jobs[2].id, "someone-else", 1, None, False),
    ]
    assert (
        _count(settler.metrics, "jobs_outcomes_refused_total", task="settle", outcome="released")
        == 1
    )


async def _written_while_running(settler: Settler, record: Any) -> None:
    """Run the settler, record outcomes with ``record()``, wait until they are written (a
    gathering that waited out the settler's hour-long delay would time out instead)."""
    writer = asyncio.create_task(settler.run())
    try:
        record()
        await asyncio.wait_for(settler.drain(), 10)
    finally:
        writer.cancel()


async def _completed_ids(conninfo: str) -> list[int]:
    rows = await _rows(conninfo, "SELECT job_id FROM app_jobs.job_history ORDER BY job_id")
    return [row[0] for row in rows]


async def test_a_full_batch_is_written_without_waiting_out_the_delay(db_conninfo: str) -> None:
    jobs = await _claimed(db_conninfo, 3)
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool, batch=3, delay=3600)

        def record() -> None:
            for job in jobs:
                settler.completed(job, None)

        await _written_while_running(settler, record)
    assert await _completed_ids(db_conninfo) == sorted(job.id for job in jobs)


async def test_hurry_writes_a_partial_batch_at_once(db_conninfo: str) -> None:
    # the worker hurries its settler when nothing is left running: no outcome is coming soon
    [job] = await _claimed(db_conninfo, 1)
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool, batch=100, delay=3600)

        def record() -> None:
            settler.completed(job, None)
            settler.hurry()

        await _written_while_running(settler, record)
    assert await _completed_ids(db_conninfo) == [job.id]
