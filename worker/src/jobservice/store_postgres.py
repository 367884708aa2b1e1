"""The PostgreSQL :class:`~jobservice.store.JobStore`: the named queries of ``queries.sql`` and
``callback.sql`` bound to the service's schema, over the service's connection pool.

It owns the outcome metrics: every outcome applied, by the worker's settler or by a function's
callback, is counted here (see :mod:`jobservice.store`).

It also keeps the jobs table's claim index short: every claimed job leaves a dead entry at the
head of ``jobs_claim_idx`` that each later claim steps over until a VACUUM removes it, so the
cost of a claim grows with the jobs done since the last one (a 1,000,000-job drain without
vacuum more than doubles the server's CPU per job). After every :data:`VACUUM_EVERY` jobs it
settles, the store vacuums ``jobs`` on a pooled connection in the background (one at a time;
``SKIP_LOCKED``, so a VACUUM already running, e.g. autovacuum's, is not waited for). Autovacuum,
when on, visits the table only after its ``naptime`` (a minute), which a fast drain outruns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import logging
from collections.abc import Collection, Sequence
from functools import cache
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobfn.sqlfiles import QuerySet, load
from jobservice.claimed_job import ClaimedJob
from jobservice.logs import event
from jobservice.metrics import Metrics
from jobservice.queries import Queries, queries_for
from jobservice.retry import CONNECTION_ERRORS
from jobservice.store import Attempt

log = logging.getLogger("jobservice.store")

_CALLBACK_QUERIES = load("jobservice", "callback.sql")

VACUUM_EVERY = 25_000
"""Jobs settled (completed or failed) by one store between two VACUUMs of the jobs table: on a
table of 1,000,000 queued jobs one VACUUM costs the server about 65 ms (about 2.5 µs per job
at this interval) and keeps each claim from stepping over more than ~25,000 dead index entries
(about 125 index pages)."""


@cache
def callback_queries(schema: str) -> QuerySet:
    """The queries of ``callback.sql`` bound to ``schema``."""
    return QuerySet(_CALLBACK_QUERIES, schema, source="callback.sql")


class PostgresStore:
    """Jobs in PostgreSQL (see the module docstring)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        schema: str,
        *,
        worker_id: str,
        metrics: Metrics | None = None,
        job_expiry: float = 4 * 3600.0,
        conninfo: str | None = None,
        vacuum_every: int = VACUUM_EVERY,
    ) -> None:
        self.pool = pool
        self.queries: Queries = queries_for(schema)
        self.callback_sql = callback_queries(schema)
        self.worker_id = worker_id
        self.metrics = metrics or Metrics()
        self.job_expiry = job_expiry
        self.conninfo = conninfo
        """Where :meth:`on_own_connection` connects (``None``: it keeps to the pool)."""
        self.vacuum_every = vacuum_every
        """Jobs settled between two VACUUMs of the jobs table (0: never)."""
        self.vacuums = 0
        """VACUUMs of the jobs table this store ran to completion."""
        self._own: OwnConnection | None = None
        self._unvacuumed = 0
        self._vacuum: asyncio.Task[None] | None = None

    async def _rows(self, query: Any, params: dict[str, Any] | None = None) -> list[Any]:
        if self._own is not None:
            return await self._own.rows(query, params)
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description is not None else []

    async def ping(self, within: float) -> None:
        async with self.pool.connection(timeout=within) as conn:
            await conn.execute(self.queries["ping"])

    # -- the worker ---------------------------------------------------------------------------

    async def unregister(self) -> None:
        await self._rows(self.queries["unregister_worker"], {"worker_id": self.worker_id})

    async def claim(self, tasks: list[str] | None, limit: int) -> list[ClaimedJob]:
        rows = await self._rows(
            self.queries["claim_jobs"],
            {
                "worker_id": self.worker_id,
                "tasks": tasks,
                "job_expiry": self.job_expiry,
                "max_jobs": limit,
            },
        )
        return [ClaimedJob.from_row(row) for row in rows]

    async def runnable_tasks(self) -> list[str]:
        return [row[0] for row in await self._rows(self.queries["runnable_tasks"])]

    async def adopt(self, known: Collection[int]) -> list[ClaimedJob]:
        rows = await self._rows(
            self.queries["adopt_jobs"], {"worker_id": self.worker_id, "known": list(known)}
        )
        return [ClaimedJob.from_row(row) for row in rows]

    async def complete(self, jobs: Sequence[ClaimedJob], results: Sequence[str | None]) -> set[int]:
        ids = [job.id for job in jobs]
        array = _int_array(ids)
        with_results = None if all(r is None for r in results) else list(results)
        query = self.queries["complete_jobs"]
        params = {"worker_id": self.worker_id, "job_ids": array, "results": with_results}
        try:
            rows = await self._rows(query, params)
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as exc:
            if with_results is None:
                raise
            # A result PostgreSQL refuses (e.g. NaN in JSON) must not block the jobs.
            event(log, logging.WARNING, "write_refused", f"retrying without results: {exc}")
            rows = await self._rows(query, params | {"results": None})
        done = {row[0] for row in rows}
        if len(done) < len(ids):
            missing = {job.id: job.task for job in jobs if job.id not in done}
            done |= await self._refused(missing, "completed", {})
        for task, count in collections.Counter(j.task for j in jobs if j.id in done).items():
            self.metrics.completed(task).inc(count)
        self._settled(len(done))
        return done

    async def fail(
        self, jobs: Sequence[ClaimedJob], messages: Sequence[str | None], retryable: Sequence[bool]
    ) -> dict[int, str]:
        params = {
            "worker_id": self.worker_id,
            "job_ids": [job.id for job in jobs],
            "messages": list(messages),
            "retryable": list(retryable),
        }
        outcomes: dict[int, str] = dict(await self._rows(self.queries["fail_jobs"], params))
        if len(outcomes) < len(jobs):
            missing = {job.id: job.task for job in jobs if job.id not in outcomes}
            sent = {j.id: m for j, m in zip(jobs, messages, strict=True) if j.id in missing}
            for job_id in await self._refused(missing, "failed", sent):
                outcomes[job_id] = "written"
        for job in jobs:
            self._count_failure(job.id, job.task, outcomes.get(job.id))
        self._settled(len(outcomes))
        return outcomes

    async def release_unreachable(
        self, jobs: Sequence[ClaimedJob], delays: Sequence[float], messages: Sequence[str | None]
    ) -> set[int]:
        params = {
            "worker_id": self.worker_id,
            "job_ids": [job.id for job in jobs],
            "delays": list(delays),
            "messages": list(messages),
        }
        released = {
            row[0] for row in await self._rows(self.queries["release_unreachable_jobs"], params)
        }
        if len(released) < len(jobs):
            missing = {job.id: job.task for job in jobs if job.id not in released}
            released |= await self._refused(missing, "released", {})
        return released

    async def await_callback(self, job: ClaimedJob, deadline: float) -> None:
        params = {"worker_id": self.worker_id, "job_id": job.id, "deadline": deadline}
        await self._rows(self.queries["await_callback"], params)
        self.metrics.awaiting(job.task).inc()

    async def notify_probe(self, token: str) -> None:
        await self._rows(self.queries["notify_probe"], {"token": token})

    # -- liveness -----------------------------------------------------------------------------

    def on_own_connection(self, timeout: float) -> PostgresStore:
        if self.conninfo is None:
            return self
        store = copy.copy(self)
        store._own = OwnConnection(self.conninfo, timeout)
        store._vacuum, store._unvacuumed = None, 0  # the upkeep stays with this store
        return store

    async def close(self) -> None:
        if self._vacuum is not None and not self._vacuum.done():
            self._vacuum.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._vacuum
        if self._own is not None:
            await self._own.close()

    # -- upkeep of the jobs table ---------------------------------------------------------------

    def _settled(self, count: int) -> None:
        """Count jobs that left the queue; start a VACUUM of ``jobs`` every :attr:`vacuum_every`."""
        self._unvacuumed += count
        if self.vacuum_every <= 0 or self._unvacuumed < self.vacuum_every:
            return
        if self._vacuum is not None and not self._vacuum.done():
            return  # the last one is still running: the next settle starts the next
        self._unvacuumed = 0
        self._vacuum = asyncio.get_running_loop().create_task(self._vacuum_jobs())

    async def wait_vacuum(self) -> None:
        """Wait for the VACUUM of the jobs table in progress, if any."""
        if self._vacuum is not None:
            await asyncio.shield(self._vacuum)

    async def _vacuum_jobs(self) -> None:
        try:
            async with self.pool.connection() as conn:
                autocommit = conn.autocommit  # VACUUM cannot run in a transaction block
                if not autocommit:
                    await conn.set_autocommit(True)
                try:
                    await conn.execute(self.queries["vacuum_jobs"])
                finally:
                    if not autocommit:
                        await conn.set_autocommit(False)
        except (psycopg.Error, TimeoutError) as exc:
            event(log, logging.WARNING, "vacuum_failed", f"VACUUM of the jobs table: {exc}")
            return
        self.vacuums += 1

    async def heartbeat(self, info: str) -> None:
        params = {"worker_id": self.worker_id, "info": info}
        await self._rows(self.queries["worker_heartbeat"], params)

    async def rescue_dead_workers(
        self, dead_after: float, heard_for: float
    ) -> list[tuple[int, str, str]]:
        params = {"dead_after": dead_after, "heard_for": heard_for}
        rows: list[tuple[int, str, str]] = await self._rows(
            self.queries["rescue_dead_workers"], params
        )
        return rows

    async def expire_callback_deadlines(self) -> list[tuple[int, str]]:
        rows: list[tuple[int, str]] = await self._rows(self.queries["expire_callback_deadlines"])
        return rows

    # -- the callback server --------------------------------------------------------------------

    async def complete_attempt(self, attempt: Attempt, result: str | None) -> bool:
        params = _attempt_params(attempt) | {"result": result}
        rows = await self._rows(self.callback_sql["complete_attempt"], params)
        for _, task in rows:
            self.metrics.completed(task).inc()
        self._settled(len(rows))
        return bool(rows)

    async def fail_attempt(self, attempt: Attempt, message: str, retryable: bool) -> str | None:
        params = _attempt_params(attempt) | {"message": message, "retryable": retryable}
        rows = await self._rows(self.callback_sql["fail_attempt"], params)
        if not rows:
            return None
        job_id, outcome, task = rows[0]
        self._count_failure(job_id, task, outcome)
        self._settled(1)
        return str(outcome)

    async def progress_attempt(self, attempt: Attempt, progress: int, message: str | None) -> bool:
        params = _attempt_params(attempt) | {"progress": progress, "message": message}
        return bool(await self._rows(self.callback_sql["progress_attempt"], params))

    async def job_state(self, job_id: int) -> tuple[str | None, int, str | None, str | None] | None:
        rows = await self._rows(self.callback_sql["job_state"], {"job_id": job_id})
        return tuple(rows[0]) if rows else None

    async def job_finished(
        self, job_id: int
    ) -> tuple[str | None, str, int, str | None, str | None] | None:
        rows = await self._rows(self.callback_sql["job_finished"], {"job_id": job_id})
        return tuple(rows[0]) if rows else None

    # -- counting and refusals ------------------------------------------------------------------

    def _count_failure(self, job_id: int, task: str, outcome: str | None) -> None:
        if outcome == "retry":
            self.metrics.retried(task).inc()
        elif outcome == "failed":
            self.metrics.failed(task).inc()
            event(
                log,
                logging.WARNING,
                "job_failed",
                f"job {job_id} failed for good",
                job_id=job_id,
                task=task,
            )

    async def _refused(
        self, missing: dict[int, str], kind: str, sent_messages: dict[int, str | None]
    ) -> set[int]:
        """Log and count outcomes the database did not apply; returns the ids that were in
        fact written by this worker (a retried statement whose first reply was lost)."""
        holders: list[Any]
        try:
            holders = await self._rows(self.queries["job_holders"], {"job_ids": list(missing)})
        except psycopg.Error:
            holders = [(job_id, "?", None, None, None) for job_id in missing]
        ours: set[int] = set()
        for job_id, locked_by, last_error, status, finished_by in holders:
            task = missing[job_id]
            found = (locked_by, last_error, status, finished_by)
            if written_by(kind, self.worker_id, found, sent_messages.get(job_id)):
                ours.add(job_id)
                continue
            if locked_by == "?":
                holder = "holder unknown: the database could not be asked"
            elif locked_by is not None:
                holder = f"locked by {locked_by}"
            elif status is not None:
                holder = f"{status} by {finished_by}"
            else:
                holder = "back in the queue"
            self.metrics.refused.labels(task=task, outcome=kind).inc()
            event(
                log,
                logging.WARNING,
                "outcome_refused",
                f"job {job_id}: {kind} outcome refused, the job is no longer this worker's"
                f" ({holder})",
                job_id=job_id,
                task=task,
                outcome=kind,
                worker_id=self.worker_id,
                holder=locked_by or finished_by,
                holder_state=holder,
            )
        return ours


class OwnConnection:
    """One autocommit connection outside the pool, opened when needed; a statement (or
    connecting) that takes longer than ``timeout`` seconds fails, and any failure closes it."""

    def __init__(self, conninfo: str, timeout: float) -> None:
        self.conninfo = conninfo
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def rows(self, query: Any, params: dict[str, Any] | None) -> list[Any]:
        """Run ``query``; its rows (none for a statement without a result)."""
        try:
            conn = self._conn
            if conn is None or conn.closed:
                conn = self._conn = await self._connect()
            cur = await asyncio.wait_for(conn.execute(query, params), self.timeout)
            return await cur.fetchall() if cur.description is not None else []
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        connecting = psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        conn: psycopg.AsyncConnection[Any] = await asyncio.wait_for(connecting, self.timeout)
        return conn

    async def close(self) -> None:
        """Close the connection (a new one is opened when needed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()


def written_by(
    kind: str,
    worker_id: str,
    holder: tuple[str | None, str | None, str | None, str | None],
    sent_message: str | None,
) -> bool:
    """Whether a job missing from a statement's answer shows ``worker_id``'s own write.

    ``holder`` is ``(locked_by, last_error, status, finished_by)`` from ``job_holders``.
    """
    locked_by, last_error, status, finished_by = holder
    if locked_by is not None:
        return False
    if kind == "completed":
        return status == "completed" and finished_by == worker_id
    if kind == "failed":
        if status is not None:
            return status == "failed" and finished_by == worker_id
        return sent_message is not None and last_error == sent_message
    # released: back in the queue, unlocked, is what this worker's release does.
    return status is None


def _attempt_params(attempt: Attempt) -> dict[str, object]:
    return {
        "worker_id": attempt.worker_id,
        "job_id": attempt.job_id,
        "attempt": attempt.attempt,
        "database_id": attempt.database_id,
    }


def _int_array(values: list[int]) -> str:
    """A PostgreSQL array literal of integers (much cheaper to send than a dumped list)."""
    return "{" + ",".join(map(str, values)) + "}"
