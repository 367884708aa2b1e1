"""Writing the worker's job outcomes in batches through the :class:`~jobservice.store.JobStore`.

Outcomes are gathered for at most ``settle_delay`` seconds and written together: one
``complete``, one ``fail`` and one ``release_unreachable`` call per batch. The gathering ends
early when ``settle_batch`` outcomes are pending or when the worker has nothing left running
(:meth:`Settler.hurry`: no outcome is coming soon, so a lone job is not kept waiting): a busy
worker writes few, large batches, an idle one writes at once. A 202 reply gets
``await_callback`` with the callback deadline. Connection errors are retried with backoff
(:class:`jobservice.retry.Backoff`) for as long as it takes. When the store refuses a batch (a
result it cannot hold is already retried without results by the store), the jobs are given up
here and :meth:`Settler.take_refusal` tells the worker to adopt them again, rather than leaving
them locked by a live worker. :attr:`Settler.unwritten` holds the ids whose outcome is not
written yet: still this worker's in the store, not to be adopted.

The store counts what it applied and logs what it refused because the job was no longer this
worker's (see :mod:`jobservice.store`). Jobs whose function could not be reached are released
without using their attempt, runnable again after the route's breaker delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import psycopg

from jobservice.aio import wait_event
from jobservice.claimed_job import ClaimedJob
from jobservice.logs import event
from jobservice.metrics import Metrics
from jobservice.retry import CONNECTION_ERRORS, Backoff
from jobservice.store import JobStore

log = logging.getLogger("jobservice.settle")

T = TypeVar("T")


class Settler:
    """Gathers outcomes of finished jobs and writes them in batches (see the module docstring)."""

    def __init__(
        self,
        store: JobStore,
        *,
        batch: int,
        delay: float,
        callback_deadline: float,
    ) -> None:
        self.store = store
        self.batch = batch
        self.delay = delay
        self.callback_deadline = callback_deadline
        self.unwritten: set[int] = set()
        """Ids of the jobs whose outcome is gathered and not written (or given up) yet."""
        self._refused = False
        self._done: list[tuple[ClaimedJob, str | None]] = []
        self._fail: list[tuple[ClaimedJob, str | None, bool]] = []
        self._callback: list[ClaimedJob] = []
        self._free: list[tuple[ClaimedJob, float, str | None]] = []
        self._wanted = asyncio.Event()
        self._hurry = asyncio.Event()
        self._settled = asyncio.Event()
        self._flushing = False

    @property
    def metrics(self) -> Metrics:
        """The store's metrics (where the outcomes written are counted)."""
        return self.store.metrics

    # -- gathering --------------------------------------------------------------------------

    def take_refusal(self) -> bool:
        """Whether the store refused outcomes since the last call: the jobs of those outcomes
        are still locked by this worker and must be adopted again."""
        refused, self._refused = self._refused, False
        return refused

    def hurry(self) -> None:
        """Write what is gathered without waiting out the delay (the worker is idle)."""
        self._hurry.set()

    def completed(self, job: ClaimedJob, result: str | None) -> None:
        """``job`` completed with ``result`` (JSON text or ``None``)."""
        self.unwritten.add(job.id)
        done = self._done
        done.append((job, result))
        self._wanted.set()
        if len(done) >= self.batch:
            self._hurry.set()

    def failed(self, job: ClaimedJob, message: str | None, *, retryable: bool) -> None:
        """``job``'s attempt failed; ``retryable`` False fails it for good."""
        self.unwritten.add(job.id)
        self._fail.append((job, message, retryable))
        self._wanted.set()

    def awaiting_callback(self, job: ClaimedJob) -> None:
        """``job`` answered 202: it stays locked until its callback or the deadline."""
        self.unwritten.add(job.id)
        self._callback.append(job)
        self._wanted.set()

    def unreachable(self, job: ClaimedJob, delay: float, message: str | None) -> None:
        """Give ``job`` back without using its attempt, runnable again in ``delay`` seconds.

        ``message`` (the connection error) becomes its ``last_error``; ``None`` keeps it (a job
        released before it was dispatched).
        """
        self.unwritten.add(job.id)
        self._free.append((job, delay, message))
        self._wanted.set()

    @property
    def pending(self) -> int:
        """Outcomes gathered and not yet written."""
        return len(self._done) + len(self._fail) + len(self._callback) + len(self._free)

    # -- writing ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Write outcomes whenever there are some, forever (cancel to stop)."""
        while True:
            await self._wanted.wait()
            if self.delay > 0 and self.pending < self.batch:
                await wait_event(self._hurry, self.delay)
            self._hurry.clear()
            self._wanted.clear()
            self._flushing = True
            try:
                await self.flush_once()
            except Exception:  # a bug must not stop outcomes from being written
                log.exception("settling error", extra={"action": "settle_error"})
                self._refused = True
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

    async def flush_once(self) -> None:
        """Write the outcomes gathered so far (at most ``batch`` of each kind)."""
        n = self.batch
        done, self._done = self._done[:n], self._done[n:]
        fail, self._fail = self._fail[:n], self._fail[n:]
        free, self._free = self._free[:n], self._free[n:]
        callbacks, self._callback = self._callback[:n], self._callback[n:]
        store = self.store
        if done:
            jobs = [job for job, _ in done]
            results = [result for _, result in done]
            await self._retrying(lambda: store.complete(jobs, results), jobs)
        if fail:
            jobs = [job for job, _, _ in fail]
            messages = [message for _, message, _ in fail]
            retryable = [flag for _, _, flag in fail]
            await self._retrying(lambda: store.fail(jobs, messages, retryable), jobs)
        if free:
            jobs = [job for job, _, _ in free]
            delays = [delay for _, delay, _ in free]
            messages = [message for _, _, message in free]
            await self._retrying(lambda: store.release_unreachable(jobs, delays, messages), jobs)
        deadline = self.callback_deadline
        for job in callbacks:
            await self._retrying(partial(store.await_callback, job, deadline), [job])

    async def _retrying(self, op: Callable[[], Awaitable[T]], jobs: list[ClaimedJob]) -> T | None:
        """Run ``op`` until it succeeds (see the module docstring); ``None`` if given up."""
        backoff = Backoff()
        try:
            while True:
                try:
                    return await op()
                except CONNECTION_ERRORS as exc:
                    event(log, logging.WARNING, "write_failed", f"writing outcomes failed: {exc}")
                    await asyncio.sleep(backoff.next())
                except psycopg.Error as exc:
                    event(
                        log,
                        logging.ERROR,
                        "write_refused",
                        f"outcomes refused by the database, jobs will run again: {exc}",
                        job_ids=[job.id for job in jobs],
                    )
                    self._refused = True
                    return None
        finally:
            self.unwritten.difference_update(job.id for job in jobs)
