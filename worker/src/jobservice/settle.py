"""Writing job outcomes in batches: one ``complete_jobs`` and one ``fail_jobs`` per batch.

Outcomes are gathered for ``settle_delay`` seconds (or until ``settle_batch`` are pending) and
written together; a 202 reply gets ``await_callback`` with the callback deadline. Connection
errors are retried with backoff for as long as it takes. A statement PostgreSQL refuses is tried
once more without the results (a result it cannot store must not block the jobs); if that is
refused too, the jobs are given up here and :attr:`Settler.on_refused` asks the worker to adopt
them again, rather than leaving them locked by a live worker.

What the database actually did is what is counted: ``complete_jobs``, ``fail_jobs`` and
``release_unreachable_jobs`` return the jobs they changed. A job missing from that answer was
no longer this worker's (rescued, expired, cancelled): its outcome is *refused*, logged
(``action: outcome_refused``) with the job and who holds it now, and counted in
``jobs_outcomes_refused_total`` instead of ``jobs_completed_total``/``jobs_failed_total``. A job
missing because the statement's reply was lost after it committed (the retry finds the work
done by this worker) is counted as written.

Jobs whose function could not be reached are released with ``release_unreachable_jobs``: their
attempt is given back and they are runnable again after the route's breaker delay.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from jobservice.job import Job
from jobservice.logs import event
from jobservice.metrics import Metrics
from jobservice.queries import Queries

log = logging.getLogger("jobservice.worker")

T = TypeVar("T")
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


class Settler:
    """Gathers outcomes of finished jobs and writes them in batches (see the module docstring)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        *,
        worker_id: str,
        batch: int,
        delay: float,
        callback_deadline: float,
        metrics: Metrics,
        on_written: Callable[[list[int]], None],
        on_refused: Callable[[], None],
    ) -> None:
        self.pool = pool
        self.queries = queries
        self.worker_id = worker_id
        self.batch = batch
        self.delay = delay
        self.callback_deadline = callback_deadline
        self.metrics = metrics
        self.on_written = on_written
        """Called with the ids whose outcome was written (or given up)."""
        self.on_refused = on_refused
        """Called when the database refused outcomes: those jobs must be adopted again."""
        self._done_ids: list[int] = []
        self._done_results: list[str | None] = []
        self._done_tasks: list[str] = []
        self._fail_ids: list[int] = []
        self._fail_messages: list[str | None] = []
        self._fail_retryable: list[bool] = []
        self._fail_tasks: list[str] = []
        self._callback_jobs: list[Job] = []
        self._free_ids: list[int] = []
        self._free_delays: list[float] = []
        self._free_messages: list[str | None] = []
        self._free_tasks: list[str] = []
        self._wanted = asyncio.Event()
        self._settled = asyncio.Event()
        self._flushing = False

    # -- gathering --------------------------------------------------------------------------

    def completed(self, job: Job, result: str | None) -> None:
        """``job`` completed with ``result`` (JSON text or ``None``)."""
        self._done_ids.append(job.id)
        self._done_results.append(result)
        self._done_tasks.append(job.task)
        self._wanted.set()

    def failed(self, job: Job, message: str | None, *, retryable: bool) -> None:
        """``job``'s attempt failed; ``retryable`` False fails it for good."""
        self._fail_ids.append(job.id)
        self._fail_messages.append(message)
        self._fail_retryable.append(retryable)
        self._fail_tasks.append(job.task)
        self._wanted.set()

    def awaiting_callback(self, job: Job) -> None:
        """``job`` answered 202: it stays locked until its callback or the deadline."""
        self._callback_jobs.append(job)
        self._wanted.set()

    def unreachable(self, job: Job, delay: float, message: str | None) -> None:
        """Give ``job`` back without using its attempt, runnable again in ``delay`` seconds.

        ``message`` (the connection error) becomes its ``last_error``; ``None`` keeps it (a job
        released before it was dispatched).
        """
        self._free_ids.append(job.id)
        self._free_delays.append(delay)
        self._free_messages.append(message)
        self._free_tasks.append(job.task)
        self._wanted.set()

    @property
    def pending(self) -> int:
        """Outcomes gathered and not yet written."""
        return (
            len(self._done_ids)
            + len(self._fail_ids)
            + len(self._callback_jobs)
            + len(self._free_ids)
        )

    # -- writing ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Write outcomes whenever there are some, forever (cancel to stop)."""
        while True:
            await self._wanted.wait()
            if self.delay > 0 and self.pending < self.batch:
                await asyncio.sleep(self.delay)
            self._wanted.clear()
            self._flushing = True
            try:
                await self.flush_once()
            except Exception:  # a bug must not stop outcomes from being written
                log.exception("settling error", extra={"action": "settle_error"})
                self.on_refused()
            finally:
                self._flushing = False
            if self.pending:
                self._wanted.set()
            else:
                self._settled.set()

    async def drain(self) -> None:
        """Return once every gathered outcome is written (needs :meth:`run` running)."""
        while self.pending or self._flushing:
            self._settled.clear()
            self._wanted.set()
            await self._settled.wait()

    def _take(self, name: str) -> list[Any]:
        items: list[Any] = getattr(self, name)
        setattr(self, name, items[self.batch :])
        return items[: self.batch]

    async def flush_once(self) -> None:
        """Write the outcomes gathered so far (at most ``batch`` of each kind)."""
        done_ids, done_results = self._take("_done_ids"), self._take("_done_results")
        done_tasks = self._take("_done_tasks")
        fail_ids, fail_msgs = self._take("_fail_ids"), self._take("_fail_messages")
        fail_retry, fail_tasks = self._take("_fail_retryable"), self._take("_fail_tasks")
        callbacks: list[Job] = self._take("_callback_jobs")
        free_ids, free_delays = self._take("_free_ids"), self._take("_free_delays")
        free_msgs, free_tasks = self._take("_free_messages"), self._take("_free_tasks")
        if done_ids:
            await self._write_completed(done_ids, done_results, done_tasks)
        if fail_ids:
            await self._write_failed(fail_ids, fail_msgs, fail_retry, fail_tasks)
        if free_ids:
            await self._write_released(free_ids, free_delays, free_msgs, free_tasks)
        for job in callbacks:
            params = {"job_id": job.id, "deadline": self.callback_deadline}
            await self._retrying(
                partial(self.execute, self.queries.await_callback, params), job_ids=[job.id]
            )
            self.metrics.awaiting(job.task).inc()

    async def _write_completed(
        self, ids: list[int], results: list[str | None], tasks: list[str]
    ) -> None:
        array = _int_array(ids)
        with_results = None if all(r is None for r in results) else results
        query = self.queries.complete_jobs
        written = await self._retrying(
            partial(self.execute, query, {"job_ids": array, "results": with_results}),
            # A result PostgreSQL refuses (e.g. NaN in JSON) must not block the jobs.
            fallback=partial(self.execute, query, {"job_ids": array, "results": None}),
            job_ids=ids,
        )
        if written is None:
            return
        done = {row[0] for row in written}
        if len(done) < len(ids):
            missing = {i: t for i, t in zip(ids, tasks, strict=True) if i not in done}
            ours = await self._refused(missing, "completed", {})
            done |= ours
        for task, count in collections.Counter(
            t for i, t in zip(ids, tasks, strict=True) if i in done
        ).items():
            self.metrics.completed(task).inc(count)

    async def _write_failed(
        self, ids: list[int], messages: list[str | None], retryable: list[bool], tasks: list[str]
    ) -> None:
        params = {"job_ids": ids, "messages": messages, "retryable": retryable}
        rows = await self._retrying(
            partial(self.execute, self.queries.fail_jobs, params), job_ids=ids
        )
        if rows is None:
            return
        outcomes = dict(rows)
        if len(outcomes) < len(ids):
            missing = {i: t for i, t in zip(ids, tasks, strict=True) if i not in outcomes}
            sent = {i: m for i, m in zip(ids, messages, strict=True) if i in missing}
            for job_id in await self._refused(missing, "failed", sent):
                outcomes[job_id] = "written"
        for job_id, task in zip(ids, tasks, strict=True):
            outcome = outcomes.get(job_id)
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

    async def _write_released(
        self, ids: list[int], delays: list[float], messages: list[str | None], tasks: list[str]
    ) -> None:
        params = {"job_ids": ids, "delays": delays, "messages": messages}
        rows = await self._retrying(
            partial(self.execute, self.queries.release_unreachable_jobs, params), job_ids=ids
        )
        if rows is None:
            return
        released = {row[0] for row in rows}
        if len(released) < len(ids):
            missing = {i: t for i, t in zip(ids, tasks, strict=True) if i not in released}
            await self._refused(missing, "released", {})

    async def _refused(
        self, missing: dict[int, str], kind: str, sent_messages: dict[int, str | None]
    ) -> set[int]:
        """Log and count outcomes the database did not apply; returns the ids that were in
        fact written by this worker (a retried statement whose first reply was lost)."""
        holders: list[Any]
        try:
            holders = await self.execute(self.queries.job_holders, {"job_ids": list(missing)})
        except psycopg.Error:
            holders = [(job_id, "?", None, None, None) for job_id in missing]
        ours: set[int] = set()
        for job_id, locked_by, last_error, status, finished_by in holders:
            task = missing[job_id]
            found = (locked_by, last_error, status, finished_by)
            if _written_by_us(kind, self.worker_id, found, sent_messages.get(job_id)):
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

    async def _retrying(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        job_ids: list[int],
        fallback: Callable[[], Awaitable[T]] | None = None,
    ) -> T | None:
        """Run ``op`` until it succeeds (see the module docstring); ``None`` if given up."""
        backoff = 0.05
        try:
            while True:
                try:
                    return await op()
                except CONNECTION_ERRORS as exc:
                    event(log, logging.WARNING, "write_failed", f"writing outcomes failed: {exc}")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                except psycopg.Error as exc:
                    if fallback is None:
                        event(
                            log,
                            logging.ERROR,
                            "write_refused",
                            f"outcomes refused by the database, jobs will run again: {exc}",
                            job_ids=job_ids,
                        )
                        self.on_refused()
                        return None
                    event(log, logging.WARNING, "write_refused", f"retrying without: {exc}")
                    op, fallback = fallback, None
        finally:
            self.on_written(job_ids)

    async def execute(self, query: Any, params: dict[str, Any]) -> list[Any]:
        """Run ``query`` as this worker (``worker_id`` is added to ``params``); its rows."""
        params["worker_id"] = self.worker_id
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description is not None else []


def _written_by_us(
    kind: str,
    worker_id: str,
    holder: tuple[str | None, str | None, str | None, str | None],
    sent_message: str | None,
) -> bool:
    """Whether a job missing from a statement's answer shows this worker's own write.

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


def _int_array(values: list[int]) -> str:
    """A PostgreSQL array literal of integers (much cheaper to send than a dumped list)."""
    return "{" + ",".join(map(str, values)) + "}"
