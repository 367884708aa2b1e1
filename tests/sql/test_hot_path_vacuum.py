"""The PostgreSQL store vacuums the jobs table as jobs leave it, so that the claim does not step
over the dead index entries of every job done since the last VACUUM (autovacuum may be off or
far behind a fast drain)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobservice.metrics import Metrics
from jobservice.store_postgres import PostgresStore

DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
WORKER = "vacuum-test"


async def _enqueue(conninfo: str, n: int) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(
            "SELECT app_jobs.add_jobs(json_agg(json_build_object('db_id', %s::text,"
            " 'identifier', 'vacuum', 'payload', '{}'::json)))"
            " FROM generate_series(1, %s)",
            [DB, n],
        )


async def _one(conninfo: str, query: str) -> Any:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute(query)).fetchone()
        assert row is not None
        return row[0]


async def _drain(store: PostgresStore, batch: int) -> int:
    done = 0
    while jobs := await store.claim(None, batch):
        done += len(await store.complete(jobs, [None] * len(jobs)))
        await store.wait_vacuum()  # one at a time, so that the count below is exact
    return done


async def test_the_jobs_table_is_vacuumed_every_so_many_settled_jobs(db_conninfo: str) -> None:
    for autocommit, jobs in ((True, 120), (False, 80)):  # whatever the pool's connections are
        await _enqueue(db_conninfo, jobs)
        async with AsyncConnectionPool(
            db_conninfo, open=False, kwargs={"autocommit": autocommit}
        ) as pool:
            store = PostgresStore(pool, "app_jobs", worker_id=WORKER, metrics=Metrics())
            store.vacuum_every = 40
            assert await _drain(store, 10) == jobs
            assert store.vacuums == jobs // 40
            await store.close()
    vacuumed = await _one(
        db_conninfo,
        "SELECT vacuum_count FROM pg_stat_user_tables"
        " WHERE schemaname = 'app_jobs' AND relname = 'jobs'",
    )
    assert vacuumed == 5
    assert await _one(db_conninfo, "SELECT count(*) FROM app_jobs.job_history") == 200


async def test_no_vacuum_when_turned_off_and_the_queue_keeps_working(db_conninfo: str) -> None:
    await _enqueue(db_conninfo, 60)
    async with AsyncConnectionPool(db_conninfo, open=False, kwargs={"autocommit": True}) as pool:
        store = PostgresStore(pool, "app_jobs", worker_id=WORKER, metrics=Metrics())
        store.vacuum_every = 0
        assert await _drain(store, 20) == 60
        assert store.vacuums == 0
