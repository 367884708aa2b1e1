"""Worker liveness: heartbeats, rescuing the jobs of dead workers, expiring callback deadlines.

Every ``heartbeat_interval`` seconds the worker upserts its row in ``workers``
(``worker_heartbeat``) and runs ``rescue_dead_workers(dead_after, heard_for)``: jobs of workers
the database could have heard from for ``dead_after`` and did not go back to the queue for
another attempt. A live worker's locks never expire, so a job never runs on two workers at once
while its worker lives; a dead worker's jobs are back within ``dead_after + heartbeat_interval``
seconds (55 s by default) of its death, or of the database's return when it was down.

``heard_for`` is how long this worker has been in *continuous* contact with the database: every
liveness statement (at least one per ``expire_interval`` ≤ 1 s) that succeeds extends it; a
failed statement, or a gap between two successes longer than ``max_gap``
(``(dead_after - heartbeat_interval) / 2``, at least three statement intervals), starts it
again. The database (migration 0003)
measures a worker's silence from the latest of its last heartbeat, ``now() - heard_for`` and
its own start, and rescues nothing while ``heard_for < dead_after``. So a database outage,
restart or failover of any length never makes a live worker look dead: when it ends, every
live worker heartbeats again (within ``heartbeat_interval`` plus a retry) before any rescuer
has been back in contact for ``dead_after``. An outage shorter than ``max_gap`` that a rescuer
did not notice leaves a live worker silent for at most ``max_gap + heartbeat_interval +
retry`` < ``dead_after``.

Liveness statements go through the worker's :class:`~jobservice.store.JobStore` (``heartbeat``,
``rescue_dead_workers``, ``expire_callback_deadlines``) on a connection of their own
(:meth:`~jobservice.store.JobStore.on_own_connection`; the service's store connects with
``JOBS_DATABASE_URL``), so that a busy pool never delays a heartbeat; a statement that takes
longer than ``max_gap`` counts as failed and drops that connection.

Every ``expire_interval`` seconds ``expire_callback_deadlines()`` fails (for a retry) the jobs
answered 202 whose callback did not come before the deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time

import psycopg

from jobservice.aio import wait_event
from jobservice.logs import event
from jobservice.metrics import Metrics
from jobservice.store import JobStore

log = logging.getLogger("jobservice.liveness")


class Liveness:
    """Runs the periodic liveness statements of one worker through its :class:`JobStore`."""

    def __init__(
        self,
        store: JobStore,
        *,
        heartbeat_interval: float,
        dead_after: float,
        expire_interval: float = 1.0,
        info: dict[str, object] | None = None,
        metrics: Metrics | None = None,
        own_connection: bool = True,
    ) -> None:
        self.worker_id = store.worker_id
        self.heartbeat_interval = heartbeat_interval
        self.dead_after = dead_after
        self.expire_interval = min(expire_interval, heartbeat_interval)
        self.metrics = metrics
        self.max_gap = max((dead_after - heartbeat_interval) / 2, 3 * self.expire_interval)
        """Longest gap between two successful statements that keeps the contact continuous."""
        self.store = store.on_own_connection(self.max_gap) if own_connection else store
        """Where the liveness statements run: with ``own_connection``, on a connection of
        their own (not the pool), so that heartbeats never queue behind the worker's other
        statements; a statement that takes longer than ``max_gap`` counts as failed."""
        self.retry_interval = min(self.expire_interval, 0.5)
        """Seconds between attempts while statements fail."""
        self._heard_since: float | None = None
        self._last_ok_start: float | None = None
        self.info = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), **(info or {})}, default=str
        )

    async def close(self) -> None:
        """Close the liveness connection (a new one is opened when needed)."""
        await self.store.close()

    def heard(self, started: float, ended: float) -> None:
        """A statement sent at ``started`` succeeded at ``ended`` (``time.monotonic()``)."""
        previous = self._last_ok_start
        # The database heard us at some moment in [started, ended]: the gap since the previous
        # contact is at most ``ended - previous start``.
        if self._heard_since is None or previous is None or ended - previous > self.max_gap:
            self._heard_since = ended
        self._last_ok_start = started

    def lost(self) -> None:
        """A statement failed: the continuous contact with the database is broken."""
        self._heard_since = None
        self._last_ok_start = None

    def heard_for(self, now: float | None = None) -> float:
        """Seconds of continuous contact with the database (0 when there is none)."""
        if self._heard_since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - self._heard_since)

    async def heartbeat(self) -> None:
        """Record that this worker is alive."""
        await self.store.heartbeat(self.info)

    async def rescue(self) -> list[tuple[int, str, str]]:
        """Rescue the jobs of dead workers; returns ``(job_id, worker_id, outcome)`` rows."""
        rows = await self.store.rescue_dead_workers(self.dead_after, self.heard_for())
        for job_id, dead, outcome in rows:
            if self.metrics is not None:
                self.metrics.rescued.labels(outcome=outcome).inc()
            event(
                log,
                logging.WARNING,
                "job_rescued",
                f"job {job_id} of dead worker {dead}: {outcome}",
                job_id=job_id,
                dead_worker_id=dead,
                outcome=outcome,
                worker_id=self.worker_id,
            )
        return rows

    async def expire(self) -> list[tuple[int, str]]:
        """Fail the jobs whose callback deadline passed; returns ``(job_id, outcome)`` rows."""
        rows = await self.store.expire_callback_deadlines()
        for job_id, outcome in rows:
            event(
                log,
                logging.WARNING,
                "callback_deadline_passed",
                f"job {job_id}: no callback before the deadline ({outcome})",
                job_id=job_id,
                outcome=outcome,
            )
        return rows

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat, rescue and expire periodically until ``stop``; never raises."""
        next_beat = 0.0
        failing = False
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_beat:
                    await self.heartbeat()
                    self.heard(now, time.monotonic())
                    await self.rescue()
                    next_beat = now + self.heartbeat_interval
                started = time.monotonic()
                await self.expire()
                self.heard(started, time.monotonic())
                if failing:
                    event(log, logging.INFO, "liveness_restored", "heartbeats written again")
                failing = False
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self.lost()
                if not failing:
                    event(log, logging.WARNING, "heartbeat_failed", f"heartbeat failed: {exc!r}")
                failing = True
            await wait_event(stop, self.retry_interval if failing else self.expire_interval)
        await self.close()
