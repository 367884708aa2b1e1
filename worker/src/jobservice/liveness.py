"""Worker liveness: heartbeats, rescuing the jobs of dead workers, expiring callback deadlines.

Every ``heartbeat_interval`` seconds the worker upserts its row in ``workers``
(``worker_heartbeat``) and runs ``rescue_dead_workers(dead_after)``: jobs of workers silent
for longer than ``dead_after`` go back to the queue for another attempt. A live worker's locks
never expire, so a job never runs on two workers at once while its worker lives; a dead
worker's jobs are back within ``dead_after + heartbeat_interval`` seconds (55 s by default).

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
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobservice.aio import wait_event
from jobservice.logs import event
from jobservice.metrics import Metrics
from jobservice.queries import Queries

log = logging.getLogger("jobservice.liveness")


class Liveness:
    """Runs the periodic liveness statements of one worker."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        worker_id: str,
        heartbeat_interval: float,
        dead_after: float,
        expire_interval: float = 1.0,
        info: dict[str, object] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.worker_id = worker_id
        self.heartbeat_interval = heartbeat_interval
        self.dead_after = dead_after
        self.expire_interval = min(expire_interval, heartbeat_interval)
        self.metrics = metrics
        self.info = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), **(info or {})}, default=str
        )

    async def heartbeat(self) -> None:
        """Record that this worker is alive."""
        async with self.pool.connection() as conn:
            await conn.execute(
                self.queries.worker_heartbeat, {"worker_id": self.worker_id, "info": self.info}
            )

    async def rescue(self) -> list[tuple[int, str, str]]:
        """Rescue the jobs of dead workers; returns ``(job_id, worker_id, outcome)`` rows."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                self.queries.rescue_dead_workers, {"dead_after": self.dead_after}
            )
            rows: list[tuple[int, str, str]] = await cur.fetchall()
        for job_id, dead, outcome in rows:
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
        async with self.pool.connection() as conn:
            cur = await conn.execute(self.queries.expire_callback_deadlines)
            rows: list[tuple[int, str]] = await cur.fetchall()
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
                    await self.rescue()
                    next_beat = now + self.heartbeat_interval
                await self.expire()
                if failing:
                    event(log, logging.INFO, "liveness_restored", "heartbeats written again")
                failing = False
            except (psycopg.Error, OSError) as exc:
                if not failing:
                    event(log, logging.WARNING, "heartbeat_failed", f"heartbeat failed: {exc}")
                failing = True
            await wait_event(stop, self.expire_interval)
