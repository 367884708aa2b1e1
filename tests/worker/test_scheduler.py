"""The scheduler against a real PostgreSQL: firing, no double fire, skips, errors, downtime,
takeover, NOTIFY wake-ups and edits. Time is controlled through ``next_run_at``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from jobservice.cron import parse
from jobservice.scheduler import Scheduler

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


class Db:
    """The test database, seen the way a user sees it."""

    def __init__(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        self.conn = conn

    async def add(
        self, task: str, info: object, *, key: str | None = None, payload: object = None
    ) -> int:
        """``app_jobs.add_scheduled_job`` → the schedule's id."""
        cur = await self.conn.execute(
            "SELECT id FROM app_jobs.add_scheduled_job(%s::uuid, %s, %s::json, %s::json, %s)",
            (DB_ID, task, json.dumps(payload or {}), json.dumps(info), key),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def schedule(self, sched_id: int) -> dict[str, Any]:
        cur = await self.conn.execute(
            "SELECT *, now() AS db_now FROM app_jobs.scheduled_jobs WHERE id = %s",
            (sched_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return row

    async def make_due(self, *ids: int, ago: str = "1 second") -> None:
        """Pretend time passed: the schedules' next run is ``ago`` in the past."""
        await self.conn.execute(
            "UPDATE app_jobs.scheduled_jobs SET next_run_at = now() - %s::interval"
            " WHERE id = ANY(%s)",
            (ago, list(ids)),
        )

    async def jobs(self, task: str) -> list[dict[str, Any]]:
        cur = await self.conn.execute(
            "SELECT * FROM app_jobs.jobs WHERE task_identifier = %s ORDER BY id", (task,)
        )
        return await cur.fetchall()

    async def finish(self, task: str) -> None:
        """A worker runs and completes every job of ``task``."""
        cur = await self.conn.execute(
            "SELECT id FROM app_jobs.claim_jobs('test-worker', ARRAY[%s], '4 hours', 100)",
            (task,),
        )
        ids = [r["id"] for r in await cur.fetchall()]
        assert ids
        await self.conn.execute(
            "SELECT app_jobs.complete_jobs('test-worker', %s::bigint[])", (ids,)
        )


@pytest.fixture
async def db(db_conninfo: str) -> AsyncIterator[Db]:
    conn = await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True, row_factory=dict_row)
    async with conn:
        yield Db(conn)


async def open_pool(conninfo: str) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        conninfo, min_size=1, max_size=3, kwargs={"autocommit": True}, open=False
    )
    await pool.open(wait=True)
    return pool


@pytest.fixture
async def pool(db_conninfo: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p = await open_pool(db_conninfo)
    try:
        yield p
    finally:
        await p.close()


def scheduler(pool: AsyncConnectionPool[Any], name: str = "sched-1", **kw: Any) -> Scheduler:
    return Scheduler(pool, scheduler_id=name, **kw)


def next_fire(info: object, after: datetime, tz: str = "UTC") -> datetime:
    nxt = parse(info, default_tz=tz).next_after(after)
    assert nxt is not None
    return nxt


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = 20.0) -> None:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class ActionSeen(logging.Handler):
    """Sets ``event`` when a log record with ``action`` is emitted."""

    def __init__(self, action: str) -> None:
        super().__init__(logging.DEBUG)
        self.action = action
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) == self.action:
            self.event.set()


YEARLY = {"rule": "0 0 1 1 *"}


async def test_due_schedule_materialises_a_job(db: Db, pool: AsyncConnectionPool[Any]) -> None:
    sched_id = await db.add("report", YEARLY, payload={"kind": "yearly"})
    s = scheduler(pool)

    assert await s.tick() == 0  # a new schedule is planned, not fired
    row = await db.schedule(sched_id)
    assert row["next_run_at"] == next_fire(YEARLY, row["db_now"])
    assert row["schedule_error"] is None
    assert await db.jobs("report") == []

    await db.make_due(sched_id)
    assert await s.tick() == 1
    [job] = await db.jobs("report")
    assert job["payload"] == {"kind": "yearly"}
    assert str(job["database_id"]) == DB_ID
    row = await db.schedule(sched_id)
    assert row["last_scheduled_id"] == job["id"]
    assert row["next_run_at"] == next_fire(YEARLY, row["db_now"])
    assert row["next_run_at"] > row["db_now"]

    assert await s.tick() == 0  # not due any more


async def test_the_default_zone_plans_schedules_without_one(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    sched_id = await db.add("tokyo", {"rule": "0 9 * * *"})
    await scheduler(pool, default_tz="Asia/Tokyo").tick()
    row = await db.schedule(sched_id)
    assert row["next_run_at"] == next_fire("0 9 * * *", row["db_now"], "Asia/Tokyo")
    assert row["next_run_at"].timestamp() % 86400 == 0  # 09:00 in Tokyo is 00:00 UTC


async def test_two_schedulers_never_fire_the_same_tick_twice(
    db: Db, db_conninfo: str, pool: AsyncConnectionPool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    await db.conn.execute(
        "INSERT INTO app_jobs.scheduled_jobs (database_id, task_identifier, payload,"
        " schedule_info, next_run_at)"
        " SELECT %s::uuid, 'race', json_build_object('n', n), %s::json,"
        "        now() - interval '1 minute'"
        "   FROM generate_series(1, 250) n",
        (DB_ID, json.dumps(YEARLY)),
    )
    other_pool = await open_pool(db_conninfo)
    try:
        a = scheduler(pool, "sched-a")
        b = scheduler(other_pool, "sched-b")
        fired = 0
        with caplog.at_level(logging.INFO, logger="jobservice.scheduler"):
            for _ in range(3):
                counts = await asyncio.gather(a.tick(), b.tick(), a.tick(), b.tick())
                fired += sum(counts)
    finally:
        await other_pool.close()
    assert fired == 250
    cur = await db.conn.execute(
        "SELECT payload->>'n' AS n, count(*) AS c FROM app_jobs.jobs"
        " WHERE task_identifier = 'race' GROUP BY 1"
    )
    per_schedule = {r["n"]: r["c"] for r in await cur.fetchall()}
    assert len(per_schedule) == 250
    assert set(per_schedule.values()) == {1}
    # Neither even tried a tick the other had fired (run_scheduled_job would have refused it).
    actions = [getattr(r, "action", None) for r in caplog.records]
    assert actions.count("schedule_fired") == 250
    assert "schedule_skipped" not in actions


async def test_already_scheduled_skips_the_tick_without_error(
    db: Db, pool: AsyncConnectionPool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    sched_id = await db.add("slow", {"rule": "* * * * *"})
    s = scheduler(pool)
    await s.tick()
    await db.make_due(sched_id)
    assert await s.tick() == 1

    await db.make_due(sched_id)  # the next tick comes while the first job is still queued
    with caplog.at_level(logging.INFO, logger="jobservice.scheduler"):
        assert await s.tick() == 0
    assert len(await db.jobs("slow")) == 1
    row = await db.schedule(sched_id)
    assert row["schedule_error"] is None
    assert row["next_run_at"] > row["db_now"]  # the tick is skipped, not retried every pass
    skipped = [r for r in caplog.records if getattr(r, "action", None) == "schedule_skipped"]
    assert skipped
    assert getattr(skipped[0], "schedule_id", None) == sched_id

    await db.finish("slow")  # once the job is done, the next tick fires again
    await db.make_due(sched_id)
    assert await s.tick() == 1
    assert len(await db.jobs("slow")) == 1


async def test_invalid_schedules_are_marked_and_the_others_still_fire(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    bad_minute = await db.add("bad", {"rule": "61 * * * *"})
    bad_zone = await db.add("bad", {"rule": "* * * * *", "tz": "Mars/Base"})
    expired = await db.add("bad", {"rule": "* * * * *", "end": "2001-01-01T00:00:00Z"})
    good = await db.add("good", {"rule": "* * * * *"})
    s = scheduler(pool)
    await s.tick()

    errors = {i: (await db.schedule(i))["schedule_error"] for i in (bad_minute, bad_zone, expired)}
    assert errors[bad_minute] == 'rule: minute field "61" is out of range 0-59'
    assert errors[bad_zone] == 'tz: unknown time zone "Mars/Base"'
    assert errors[expired] is not None
    assert errors[expired].startswith("end is in the past")
    for i in (bad_minute, bad_zone, expired):
        assert (await db.schedule(i))["next_run_at"] is None

    await db.make_due(good)
    assert await s.tick() == 1
    assert len(await db.jobs("good")) == 1
    assert await db.jobs("bad") == []
    assert (await db.schedule(bad_minute))["schedule_error"] == errors[bad_minute]


async def test_a_failing_run_is_recorded_and_does_not_stop_the_others(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    # The job insert fails for one task, as a missing privilege would (as in the original system).
    await db.conn.execute(
        """
        CREATE FUNCTION public.refuse_broken() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.task_identifier = 'broken' THEN
            RAISE EXCEPTION 'permission denied for sequence jobs_id_seq';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_broken BEFORE INSERT ON app_jobs.jobs
          FOR EACH ROW EXECUTE FUNCTION public.refuse_broken();
        """
    )
    broken = await db.add("broken", {"rule": "* * * * *"})
    fine = await db.add("fine", {"rule": "* * * * *"})
    s = scheduler(pool)
    await s.tick()
    await db.make_due(broken, fine)

    assert await s.tick() == 1
    row = await db.schedule(broken)
    assert row["schedule_error"] == (
        "run_scheduled_job failed: permission denied for sequence jobs_id_seq"
    )
    assert row["next_run_at"] > row["db_now"]  # it keeps its schedule and tries again
    assert len(await db.jobs("fine")) == 1

    await db.conn.execute("DROP TRIGGER refuse_broken ON app_jobs.jobs")
    await db.make_due(broken)
    assert await s.tick() == 1
    assert (await db.schedule(broken))["schedule_error"] is None
    assert len(await db.jobs("broken")) == 1


async def test_missed_ticks_after_downtime_fire_once(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    sched_id = await db.add("minutely", {"rule": "* * * * *"})
    s = scheduler(pool)
    await s.tick()
    await db.make_due(sched_id, ago="30 days")  # ~43,000 missed ticks

    assert await s.tick() == 1
    assert await s.tick() == 0
    assert len(await db.jobs("minutely")) == 1
    row = await db.schedule(sched_id)
    assert row["db_now"] < row["next_run_at"] <= row["db_now"] + timedelta(minutes=1)


async def test_a_new_scheduler_takes_over_orphaned_schedules(
    db: Db, db_conninfo: str, pool: AsyncConnectionPool[Any]
) -> None:
    sched_id = await db.add("orphan", YEARLY)
    await scheduler(pool, "pod-old").tick()
    # The old pod is gone; its lock (as the reference's get_scheduled_job leaves) stays behind.
    await db.conn.execute(
        "UPDATE app_jobs.scheduled_jobs SET locked_at = now(), locked_by = 'pod-old' WHERE id = %s",
        (sched_id,),
    )
    await db.make_due(sched_id)
    new_pool = await open_pool(db_conninfo)
    try:
        assert await scheduler(new_pool, "pod-new").tick() == 1
    finally:
        await new_pool.close()
    assert len(await db.jobs("orphan")) == 1


async def test_one_off_is_planned_at_its_date(db: Db, pool: AsyncConnectionPool[Any]) -> None:
    when = "2999-01-01T00:00:00Z"
    sched_id = await db.add("once", when)
    await scheduler(pool).tick()
    row = await db.schedule(sched_id)
    assert row["next_run_at"] == next_fire(when, row["db_now"])


async def test_one_off_fires_once_then_never(db: Db, pool: AsyncConnectionPool[Any]) -> None:
    # Planned before its date; no scheduler ran when the date came: it fires once, late.
    sched_id = await db.add("once", "2001-01-01T00:00:00Z")
    await db.make_due(sched_id, ago="1 hour")
    s = scheduler(pool)
    assert await s.tick() == 1
    row = await db.schedule(sched_id)
    assert row["next_run_at"] is None  # dormant, with the reason
    assert row["schedule_error"] == (
        "finished: the one-off date 2001-01-01T00:00:00+00:00 has passed"
    )
    assert await s.tick() == 0
    assert len(await db.jobs("once")) == 1


async def test_one_off_already_past_when_added_is_an_error(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    sched_id = await db.add("late", "2001-01-01T00:00:00Z")
    await scheduler(pool).tick()
    row = await db.schedule(sched_id)
    assert row["schedule_error"] == "date 2001-01-01T00:00:00+00:00 is in the past"
    assert row["next_run_at"] is None
    assert await db.jobs("late") == []


async def test_only_the_scheduler_s_tasks(db: Db, pool: AsyncConnectionPool[Any]) -> None:
    mine = await db.add("mine", YEARLY)
    theirs = await db.add("theirs", YEARLY)
    s = scheduler(pool, task_identifiers=["mine"])
    await s.tick()
    assert (await db.schedule(mine))["next_run_at"] is not None
    assert (await db.schedule(theirs))["next_run_at"] is None


async def test_an_upserted_schedule_is_planned_again(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    sched_id = await db.add("keyed", YEARLY, key="nightly")
    s = scheduler(pool)
    await s.tick()
    assert (await db.add("keyed", {"rule": "*/5 * * * * *"}, key="nightly")) == sched_id
    await s.tick()
    row = await db.schedule(sched_id)
    assert row["db_now"] < row["next_run_at"] <= row["db_now"] + timedelta(seconds=5)


async def test_a_plain_update_of_schedule_info_is_noticed(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    edited = await db.add("edited", YEARLY)
    fixed = await db.add("fixed", {"rule": "61 * * * *"})
    untouched = await db.add("untouched", YEARLY)
    s = scheduler(pool)
    await s.tick()
    before = (await db.schedule(untouched))["next_run_at"]
    await db.conn.execute(
        "UPDATE app_jobs.scheduled_jobs SET schedule_info = %s::json WHERE id = ANY(%s)",
        (json.dumps({"rule": "*/5 * * * * *"}), [edited, fixed]),
    )

    assert await s.check_edits() == sorted([edited, fixed])
    await s.tick()
    for sched_id in (edited, fixed):
        row = await db.schedule(sched_id)
        assert row["schedule_error"] is None
        assert row["db_now"] < row["next_run_at"] <= row["db_now"] + timedelta(seconds=5)
    assert (await db.schedule(untouched))["next_run_at"] == before
    assert await s.check_edits() == []


async def test_a_schedule_added_while_running_is_picked_up_via_notify(
    db: Db, pool: AsyncConnectionPool[Any]
) -> None:
    # A poll interval longer than the test's wait: only the notification can wake it in time.
    s = scheduler(pool, poll_interval=300.0)
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    try:
        await asyncio.wait_for(s.listening.wait(), 20)
        sched_id = await db.add("fresh", {"rule": "* * * * * *"})

        await until(lambda: db.jobs("fresh"), "the new schedule to fire")
        assert (await db.schedule(sched_id))["last_scheduled_id"] is not None
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert not s.listening.is_set()


async def test_run_keeps_going_when_the_database_is_unreachable() -> None:
    unreachable: AsyncConnectionPool[Any] = AsyncConnectionPool(
        "host=127.0.0.1 port=1 dbname=nothing connect_timeout=1",
        min_size=0,
        max_size=1,
        open=False,
        timeout=0.2,
    )
    await unreachable.open(wait=False)
    try:
        s = scheduler(unreachable, poll_interval=0.05)
        stop = asyncio.Event()
        seen = ActionSeen("scheduler_db_error")
        logger = logging.getLogger("jobservice.scheduler")
        logger.addHandler(seen)
        try:
            task = asyncio.create_task(s.run(stop))
            await asyncio.wait_for(seen.event.wait(), 20)
            assert not task.done(), "the scheduler gave up instead of retrying"
            stop.set()
            await asyncio.wait_for(task, 20)
        finally:
            logger.removeHandler(seen)
    finally:
        await unreachable.close()
