"""The settler writes gathered outcomes in batches against a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobservice.job import Job
from jobservice.metrics import Metrics
from jobservice.queries import queries_for
from jobservice.settle import Settler

DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
WORKER = "settle-test"


async def _claimed(conninfo: str, n: int) -> list[Job]:
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
        return [Job.from_row(row) for row in await cur.fetchall()]


async def _rows(conninfo: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(query)
        return await cur.fetchall()


def _settler(pool: AsyncConnectionPool[Any], written: list[int], refused: list[bool]) -> Settler:
    return Settler(
        pool,
        queries_for("app_jobs"),
        worker_id=WORKER,
        batch=100,
        delay=0,
        callback_deadline=60,
        metrics=Metrics(),
        on_written=written.extend,
        on_refused=lambda: refused.append(True),
    )


async def test_one_flush_completes_retries_and_fails_jobs(db_conninfo: str) -> None:
    jobs = await _claimed(db_conninfo, 4)
    written: list[int] = []
    refused: list[bool] = []
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool, written, refused)
        settler.completed(jobs[0], '{"sent": 1}')
        settler.completed(jobs[1], "not json")  # refused as a result: completed without it
        settler.failed(jobs[2], "try again", retryable=True)
        settler.failed(jobs[3], "never", retryable=False)
        assert settler.pending == 4
        await settler.flush_once()

    assert settler.pending == 0
    assert sorted(written) == sorted(job.id for job in jobs)
    assert refused == []
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
    written: list[int] = []
    refused: list[bool] = []
    async with AsyncConnectionPool(db_conninfo, open=False) as pool:
        settler = _settler(pool, written, refused)
        settler.failed(job, "a NUL \x00 byte PostgreSQL text cannot hold", retryable=True)
        await settler.flush_once()

    assert refused == [True]
    assert written == [job.id]
    locked = await _rows(db_conninfo, "SELECT locked_by FROM app_jobs.jobs")
    assert locked == [(WORKER,)]
