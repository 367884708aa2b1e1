"""The scheduler: turns ``scheduled_jobs`` rows into jobs at their times.

No scheduler owns a schedule. Every pass, in one transaction, a scheduler locks the rows that
are due (``next_run_at <= now()``) or not planned yet (``next_run_at`` and ``schedule_error``
both NULL) with ``FOR UPDATE SKIP LOCKED``:

- an unplanned row gets its first ``next_run_at`` (or, if its ``schedule_info`` cannot be
  scheduled, ``schedule_error`` with the reason and no ``next_run_at``: dormant);
- a due row is materialised with ``run_scheduled_job`` (``ALREADY_SCHEDULED`` — the previous
  job is still pending — skips this tick; any other error is stored in ``schedule_error`` and
  the schedule carries on), then ``next_run_at`` moves to the first fire after *now*, so ticks
  missed while no scheduler ran fire once, not one by one; a schedule that will never fire
  again becomes dormant with ``schedule_error`` = ``"finished: ..."``.

The row lock plus the moved ``next_run_at`` mean that several schedulers never fire the same
tick twice, and any scheduler (for example one restarted under a new ``HOSTNAME``) serves every
schedule. Edits: ``add_scheduled_job``'s keyed upsert resets ``next_run_at``/``schedule_error``
so the row is planned afresh; plain ``UPDATE``s of ``schedule_info`` are noticed by comparing
fingerprints (md5 of the JSON text) at startup and every ``edit_check_interval`` seconds; a due
row is always re-read, so its next run follows the current ``schedule_info``.

Wake-ups: ``LISTEN "scheduled_jobs:insert"`` for new schedules, and a sleep until the earliest
``next_run_at``, at most ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from jobfn.sqlfiles import QuerySet, load
from jobservice.aio import wait_event
from jobservice.cron import (
    Schedule,
    ScheduleError,
    finished_reason,
    first_fire,
    parse,
    zone,
)
from jobservice.listener import SCHEDULED_CHANNEL, Listener
from jobservice.logs import event
from jobservice.queries import queries_for
from jobservice.retry import Backoff

__all__ = ["ALREADY_SCHEDULED", "Scheduler"]

log = logging.getLogger("jobservice.scheduler")

ALREADY_SCHEDULED = "ALREADY_SCHEDULED"
BATCH = 100
"""Rows locked per transaction; a pass takes batches until one is not full."""

_RAW = load("jobservice", "scheduler.sql")


@cache
def _queries(schema: str) -> QuerySet:
    """The queries of ``scheduler.sql`` bound to ``schema``."""
    return QuerySet(_RAW, schema, source="scheduler.sql")


class Scheduler:
    """Fires the schedules of ``scheduled_jobs`` (see the module docstring)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        schema: str = "app_jobs",
        scheduler_id: str,
        default_tz: str = "UTC",
        poll_interval: float = 1.0,
        task_identifiers: Sequence[str] | None = None,
        edit_check_interval: float = 30.0,
        listener: Listener | None = None,
    ) -> None:
        """``listener``: the service's shared LISTEN connection (run by the service); without
        one the scheduler runs a :class:`~jobservice.listener.Listener` of its own."""
        zone(default_tz, "default time zone")  # fail early on a bad JOBS_CRON_TZ
        self.pool = pool
        self.schema = schema
        self.scheduler_id = scheduler_id
        self.default_tz = default_tz
        self.poll_interval = poll_interval
        self.task_identifiers = list(task_identifiers) if task_identifiers is not None else None
        self.edit_check_interval = edit_check_interval
        self._q = _queries(schema)
        self._wake = asyncio.Event()
        self._owns_listener = listener is None
        if listener is None:
            listener = Listener(
                str(pool.conninfo),
                queries_for(schema),
                worker_id=scheduler_id,
                send_probe=self._send_probe,
                poll_interval=poll_interval,
            )
        self.listener = listener
        listener.subscribe(self._wake.set, SCHEDULED_CHANNEL)
        self._fingerprints: dict[int, str] = {}
        self._parsed: dict[str, Schedule | ScheduleError] = {}

    # -- one pass ------------------------------------------------------------------------

    async def tick(self) -> int:
        """One pass over due and unplanned schedules; returns the number of jobs created."""
        fired = 0
        while True:
            count, full = await self._batch()
            fired += count
            if not full:
                return fired

    async def _batch(self) -> tuple[int, bool]:
        fired = 0
        params = {"tasks": self.task_identifiers, "batch": BATCH}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self._q["work"], params)
            rows = await cur.fetchall()
            for row in rows:
                fired += await self._handle(conn, row)
        return fired, len(rows) >= BATCH

    async def _handle(self, conn: psycopg.AsyncConnection[Any], row: tuple[Any, ...]) -> int:
        sched_id, task, info, fingerprint, next_run_at, last_error, now = row
        self._fingerprints[sched_id] = fingerprint
        fields: dict[str, object] = {
            "schedule_id": sched_id,
            "task": task,
            "scheduler_id": self.scheduler_id,
        }
        schedule = self._parse(info)
        if isinstance(schedule, ScheduleError):
            return await self._invalid(conn, sched_id, str(schedule), fields)
        if next_run_at is None:
            try:
                first = first_fire(schedule, now)
            except ScheduleError as exc:
                return await self._invalid(conn, sched_id, str(exc), fields)
            await conn.execute(
                self._q["set_next"], {"id": sched_id, "next_run_at": first, "error": None}
            )
            event(
                log,
                logging.INFO,
                "schedule_planned",
                f"schedule {sched_id} planned",
                **fields,
                next_run_at=first.isoformat(),
            )
            return 0
        fired, error = await self._fire(conn, sched_id, last_error, fields)
        following = schedule.next_after(now)
        if following is not None:
            await conn.execute(
                self._q["set_next"], {"id": sched_id, "next_run_at": following, "error": error}
            )
            return fired
        reason = finished_reason(schedule, now)
        if error is not None:
            reason = f"{reason}; last run: {error}"
        await conn.execute(self._q["set_dormant"], {"id": sched_id, "error": reason})
        event(log, logging.INFO, "schedule_finished", f"schedule {sched_id}: {reason}", **fields)
        return fired

    async def _fire(
        self,
        conn: psycopg.AsyncConnection[Any],
        sched_id: int,
        last_error: str | None,
        fields: dict[str, object],
    ) -> tuple[int, str | None]:
        """Run the schedule's tick; (jobs created, the error to store)."""
        try:
            async with conn.transaction():
                cur = await conn.execute(self._q["run_scheduled_job"], {"id": sched_id})
                row = await cur.fetchone()
        except psycopg.Error as exc:
            if conn.broken:
                raise
            message = exc.diag.message_primary or str(exc)
            if message == ALREADY_SCHEDULED:
                event(
                    log,
                    logging.INFO,
                    "schedule_skipped",
                    f"schedule {sched_id}: previous job not finished yet, tick skipped",
                    **fields,
                )
                return 0, last_error
            error = f"run_scheduled_job failed: {message}"
            event(
                log,
                logging.ERROR,
                "schedule_failed",
                f"schedule {sched_id}: {error}",
                **fields,
                error=message,
            )
            return 0, error
        job_id = None if row is None else row[0]
        if job_id is None:
            return 0, last_error
        event(
            log,
            logging.INFO,
            "schedule_fired",
            f"schedule {sched_id} created job {job_id}",
            **fields,
            job_id=job_id,
        )
        return 1, None

    async def _invalid(
        self,
        conn: psycopg.AsyncConnection[Any],
        sched_id: int,
        error: str,
        fields: dict[str, object],
    ) -> int:
        await conn.execute(self._q["set_dormant"], {"id": sched_id, "error": error})
        event(
            log,
            logging.WARNING,
            "schedule_invalid",
            f"schedule {sched_id}: {error}",
            **fields,
            error=error,
        )
        return 0

    def _parse(self, info: str) -> Schedule | ScheduleError:
        """The parsed ``schedule_info`` (cached by its text), or the error."""
        found = self._parsed.get(info)
        if found is None:
            try:
                found = parse(json.loads(info), default_tz=self.default_tz)
            except ScheduleError as exc:
                found = exc
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[info] = found
        return found

    # -- edits -----------------------------------------------------------------------------

    async def check_edits(self) -> list[int]:
        """Re-plan schedules whose ``schedule_info`` changed since this scheduler saw them."""
        params = {"tasks": self.task_identifiers}
        async with self.pool.connection() as conn:
            cur = await conn.execute(self._q["fingerprints"], params)
            current = {int(i): str(fp) for i, fp in await cur.fetchall()}
            changed = {
                i: fp
                for i, fp in current.items()
                if i in self._fingerprints and self._fingerprints[i] != fp
            }
            self._fingerprints = current
            if not changed:
                return []
            cur = await conn.execute(
                self._q["replan"],
                {"ids": list(changed), "fingerprints": list(changed.values())},
            )
            replanned = sorted(int(r[0]) for r in await cur.fetchall())
        for sched_id in replanned:
            event(
                log,
                logging.INFO,
                "schedule_edited",
                f"schedule {sched_id} changed; planning it again",
                schedule_id=sched_id,
                scheduler_id=self.scheduler_id,
            )
        return replanned

    # -- the loop --------------------------------------------------------------------------

    async def _next_wake(self) -> float:
        """Seconds to sleep: until the earliest planned run, at most ``poll_interval``."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(self._q["next_wake"], {"tasks": self.task_identifiers})
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, float(row[0]) + 0.001))

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until ``stop`` is set; database errors are logged and retried, never raised."""
        event(
            log,
            logging.INFO,
            "scheduler_started",
            "scheduler started",
            scheduler_id=self.scheduler_id,
            default_tz=self.default_tz,
        )
        tasks = [asyncio.create_task(self._relay(stop))]
        if self._owns_listener:
            tasks.append(asyncio.create_task(self.listener.run()))
        backoff = Backoff(first=0.1)
        failing = False
        next_edit_check = time.monotonic()  # the first check records what schedules look like
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    if time.monotonic() >= next_edit_check:
                        next_edit_check = time.monotonic() + self.edit_check_interval
                        await self.check_edits()
                    await self.tick()
                    delay = await self._next_wake()
                    if failing:
                        event(
                            log,
                            logging.INFO,
                            "scheduler_recovered",
                            "database reachable again",
                            scheduler_id=self.scheduler_id,
                        )
                    failing = False
                    backoff.reset()
                except (psycopg.Error, OSError, PoolTimeout) as exc:
                    if not failing:
                        event(
                            log,
                            logging.WARNING,
                            "scheduler_db_error",
                            f"scheduler pass failed, retrying: {exc}",
                            scheduler_id=self.scheduler_id,
                        )
                    failing = True
                    delay = backoff.next()
                await wait_event(self._wake, delay)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            event(
                log,
                logging.INFO,
                "scheduler_stopped",
                "scheduler stopped",
                scheduler_id=self.scheduler_id,
            )

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    @property
    def listening(self) -> asyncio.Event:
        """Set while the LISTEN connection is up (tests wait for it)."""
        return self.listener.listening

    async def _send_probe(self, token: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(queries_for(self.schema)["notify_probe"], {"token": token})
