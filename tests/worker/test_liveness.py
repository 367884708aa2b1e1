"""The rescue rule: a worker is dead only when the database could have heard from it for
dead-after and did not (migration 0003), and the rescuer's continuous contact (``heard_for``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobservice.liveness import Liveness
from jobservice.queries import queries_for
from jobservice.store_memory import MemoryStore
from jobservice.store_postgres import PostgresStore

DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


def _liveness(heartbeat: float = 1.0, dead_after: float = 6.0) -> Liveness:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool("", open=False)
    return Liveness(
        PostgresStore(pool, "app_jobs", worker_id="rescuer-1"),
        heartbeat_interval=heartbeat,
        dead_after=dead_after,
    )


def test_contact_grows_while_statements_succeed_and_restarts_after_a_failure_or_a_gap() -> None:
    live = _liveness()
    assert live.max_gap == 3.0  # max((6 - 1) / 2, 3 x 1 s)
    assert live.heard_for(100.0) == 0.0
    live.heard(100.0, 100.1)
    live.heard(101.0, 101.1)
    live.heard(102.0, 102.2)
    assert live.heard_for(110.1) == 10.0
    live.lost()
    assert live.heard_for(110.1) == 0.0
    live.heard(111.0, 111.1)
    assert live.heard_for(112.1) == 1.0
    # A statement that hung 5 s (e.g. waiting for a connection during an outage): a gap.
    live.heard(112.0, 117.0)
    assert live.heard_for(118.0) == 1.0


async def _rescue(conn: psycopg.AsyncConnection[Any], dead_after: float, heard_for: float) -> Any:
    cur = await conn.execute(
        queries_for("app_jobs").rescue_dead_workers,
        {"dead_after": dead_after, "heard_for": heard_for},
    )
    return await cur.fetchall()


async def test_no_rescue_until_the_rescuer_has_been_heard_for_dead_after(db_conninfo: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as conn:
        for worker in ("quiet-1", "rescuer-1"):
            await conn.execute("SELECT app_jobs.worker_heartbeat(%s)", [worker])
        cur = await conn.execute(
            "SELECT id FROM app_jobs.add_job(%s::uuid, 'held', '{}'::json)", [DB]
        )
        row = await cur.fetchone()
        assert row is not None
        job_id = row[0]
        await conn.execute("SELECT * FROM app_jobs.claim_jobs('quiet-1', NULL, '4 hours', 1)")
        # quiet-1 was last heard 60 s ago (the outage).
        await conn.execute(
            "UPDATE app_jobs.workers SET last_seen_at = now() - interval '60 seconds'"
            " WHERE worker_id = 'quiet-1'"
        )
        # The rescuer is back in contact for 0.5 s only (an outage before that, during which
        # quiet-1 could not write either): less than dead-after 1 s, nobody is rescued.
        assert await _rescue(conn, 1, 0.5) == []
        # In contact for 2 s, and quiet-1 has not been heard in those 2 s: dead.
        assert await _rescue(conn, 1, 2) == [(job_id, "quiet-1", "retry")]
        cur = await conn.execute("SELECT worker_id FROM app_jobs.workers")
        assert await cur.fetchall() == [("rescuer-1",)]


async def test_a_worker_heard_within_dead_after_is_alive_however_long_the_contact(
    db_conninfo: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as conn:
        await conn.execute("SELECT app_jobs.worker_heartbeat('busy-1')")
        await conn.execute(
            "UPDATE app_jobs.workers SET last_seen_at = now() - interval '50 seconds'"
        )
        # In contact for 1.5 s (≥ dead-after 1 s) and busy-1 not heard in them: dead.
        assert await _rescue(conn, 1, 1.5) == []  # it held no job; the row is removed
        cur = await conn.execute("SELECT count(*) FROM app_jobs.workers")
        assert await cur.fetchone() == (0,)
        await conn.execute("SELECT app_jobs.worker_heartbeat('busy-2')")
        await conn.execute(
            "UPDATE app_jobs.workers SET last_seen_at = now() - interval '5 seconds'"
        )
        # A long contact, but busy-2 was heard 5 s ago, within dead-after 10 s: alive.
        assert await _rescue(conn, 10, 3600) == []
        cur = await conn.execute("SELECT count(*) FROM app_jobs.workers")
        assert await cur.fetchone() == (1,)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_store_rescues_the_jobs_of_a_silent_worker_once_heard_for_dead_after() -> None:
    clock = _Clock()
    rescuer = MemoryStore(worker_id="rescuer-1", clock=clock)
    quiet = dataclasses.replace(rescuer, worker_id="quiet-1")  # the same jobs and workers
    held = quiet.add("held")
    last = quiet.add("last", max_attempts=1)
    waiting = quiet.add("waiting")
    assert {j.id for j in await quiet.claim(None, 10)} == {held, last, waiting}
    await quiet.await_callback(next(iter(await quiet.adopt({held, last}))), deadline=3600)
    await quiet.heartbeat("{}")
    await rescuer.heartbeat("{}")
    clock.now += 60
    # Back in contact for less than dead-after: nobody is rescued.
    assert await rescuer.rescue_dead_workers(45, 10) == []
    await rescuer.heartbeat("{}")
    assert sorted(await rescuer.rescue_dead_workers(45, 60)) == [
        (held, "quiet-1", "retry"),
        (last, "quiet-1", "failed"),
    ]
    assert set(rescuer.workers) == {"rescuer-1"}
    assert rescuer.status(held) == "queued"
    assert rescuer.jobs[held].last_error == "worker quiet-1 stopped responding"
    assert rescuer.status(last) == "failed"
    assert rescuer.status(waiting) == "awaiting"  # its callback may still come


async def test_memory_store_keeps_a_worker_heard_within_dead_after() -> None:
    clock = _Clock()
    rescuer = MemoryStore(worker_id="rescuer-1", clock=clock)
    busy = dataclasses.replace(rescuer, worker_id="busy-1")
    job = busy.add("held")
    await busy.claim(None, 1)
    await busy.heartbeat("{}")
    clock.now += 5
    assert await rescuer.rescue_dead_workers(10, 3600) == []
    assert rescuer.status(job) == "running"
    assert set(rescuer.workers) == {"busy-1"}


async def test_memory_store_expires_callback_deadlines_for_a_retry() -> None:
    clock = _Clock()
    store = MemoryStore(clock=clock)
    job_id = store.add("hook")
    (job,) = await store.claim(None, 1)
    await store.await_callback(job, deadline=30)
    assert await store.expire_callback_deadlines() == []
    clock.now += 31
    assert await store.expire_callback_deadlines() == [(job_id, "retry")]
    assert store.status(job_id) == "queued"
    assert store.jobs[job_id].last_error == "no callback before the deadline"


async def test_liveness_runs_its_statements_through_the_store() -> None:
    clock = _Clock()
    store = MemoryStore(worker_id="w-1", clock=clock)
    live = Liveness(store, heartbeat_interval=1.0, dead_after=6.0)
    assert live.store is store  # a memory store has no connection of its own
    await live.heartbeat()
    assert store.workers == {"w-1": clock.now}
    assert await live.rescue() == []
