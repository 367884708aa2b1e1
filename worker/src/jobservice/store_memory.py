"""An in-memory :class:`~jobservice.store.JobStore` for fast tests of the worker's scheduling.

Same semantics as the PostgreSQL store for what the worker relies on: jobs are claimed in
``(priority, run_at, id)`` order among the unlocked jobs whose ``run_at`` has come and whose
task is in the claim's filter; a claim locks them for the worker and counts an attempt; a
failed attempt is retried after :func:`retry_delay` (as ``app_jobs.retry_delay``) unless it
was the last or not retryable; an unreachable job gets its attempt back. Outcomes for jobs the
worker no longer holds are refused and counted like the PostgreSQL store's.

:meth:`MemoryStore.lose_next_claim_reply` makes the next claim lock its jobs and then raise a
connection error, as a claim whose reply was lost does: the worker must adopt them.
:meth:`MemoryStore.refuse_next_outcomes` makes the next ``complete``/``fail`` raise as a
statement the database refuses does (the jobs stay locked: the worker must adopt them).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import psycopg

from jobservice.claimed_job import ClaimedJob
from jobservice.metrics import Metrics
from jobservice.store import Attempt

_NO_CALLBACK = "no callback before the deadline"


def retry_delay(attempts: int) -> float:
    """Seconds before a failed attempt runs again: ``exp(min(attempts, 10))``."""
    return math.exp(min(attempts, 10))


@dataclass(slots=True)
class StoredJob:
    """A job row of the memory store."""

    id: int
    task: str
    payload: object
    priority: int = 0
    run_at: float = 0.0
    attempts: int = 0
    max_attempts: int = 25
    database_id: str | None = None
    locked_by: str | None = None
    awaiting_until: float | None = None
    last_error: str | None = None
    progress: int = 0


@dataclass(slots=True)
class FinishedJob:
    """A job of the memory store's history."""

    id: int
    task: str
    status: str
    worker_id: str
    attempts: int
    result: str | None = None
    last_error: str | None = None
    database_id: str | None = None


@dataclass
class MemoryStore:
    """Jobs in a dict (see the module docstring); one worker id per store."""

    worker_id: str = "memory-worker"
    metrics: Metrics = field(default_factory=Metrics)
    clock: object = time.monotonic
    """A callable returning seconds (``run_at`` is measured with it)."""
    jobs: dict[int, StoredJob] = field(default_factory=dict)
    finished: dict[int, FinishedJob] = field(default_factory=dict)
    claims: list[list[int]] = field(default_factory=list)
    """The ids each claim returned, in order (for tests of claim sizes)."""
    workers: dict[str, float] = field(default_factory=dict)
    """Each live worker's last heartbeat (store clock). A store for another worker id over
    the same jobs: ``dataclasses.replace(store, worker_id=...)`` (the dicts are shared)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lose_reply: bool = False
    _refuse_outcomes: bool = False

    def now(self) -> float:
        """The store's clock."""
        clock = self.clock
        assert callable(clock)
        return float(clock())

    # -- test helpers -----------------------------------------------------------------------

    def add(
        self,
        task: str,
        payload: object = None,
        *,
        priority: int = 0,
        run_in: float = 0.0,
        max_attempts: int = 25,
        database_id: str | None = None,
    ) -> int:
        """Enqueue a job; its id."""
        job_id = next(self._ids)
        self.jobs[job_id] = StoredJob(
            job_id,
            task,
            {} if payload is None else payload,
            priority=priority,
            run_at=self.now() + run_in,
            max_attempts=max_attempts,
            database_id=database_id,
        )
        return job_id

    def lose_next_claim_reply(self) -> None:
        """The next claim locks its jobs, then fails as if its reply were lost."""
        self._lose_reply = True

    def refuse_next_outcomes(self) -> None:
        """The next ``complete`` or ``fail`` call raises a refusal and changes nothing."""
        self._refuse_outcomes = True

    def _maybe_refuse(self) -> None:
        if self._refuse_outcomes:
            self._refuse_outcomes = False
            raise psycopg.DataError("outcomes refused (MemoryStore)")

    def status(self, job_id: int) -> str:
        """``"queued"``, ``"running"``, ``"awaiting"``, ``"completed"`` or ``"failed"``."""
        done = self.finished.get(job_id)
        if done is not None:
            return done.status
        job = self.jobs[job_id]
        if job.locked_by is None:
            return "queued"
        return "awaiting" if job.awaiting_until is not None else "running"

    # -- JobStore -----------------------------------------------------------------------------

    async def ping(self, within: float) -> None:
        return None

    async def unregister(self) -> None:
        for job in self.jobs.values():
            if job.locked_by == self.worker_id and job.awaiting_until is None:
                job.locked_by = None

    async def claim(self, tasks: list[str] | None, limit: int) -> list[ClaimedJob]:
        now = self.now()
        runnable = sorted(
            (
                job
                for job in self.jobs.values()
                if job.locked_by is None
                and job.run_at <= now
                and (tasks is None or job.task in tasks)
            ),
            key=lambda job: (job.priority, job.run_at, job.id),
        )[:limit]
        for job in runnable:
            job.locked_by = self.worker_id
            job.attempts += 1
        self.claims.append([job.id for job in runnable])
        if self._lose_reply and runnable:
            self._lose_reply = False
            raise psycopg.OperationalError("the claim's reply was lost (MemoryStore)")
        return [self._job(job) for job in runnable]

    async def runnable_tasks(self) -> list[str]:
        now = self.now()
        return sorted(
            {j.task for j in self.jobs.values() if j.locked_by is None and j.run_at <= now}
        )

    async def adopt(self, known: Collection[int]) -> list[ClaimedJob]:
        return [
            self._job(job)
            for job in self.jobs.values()
            if job.locked_by == self.worker_id
            and job.awaiting_until is None
            and job.id not in known
        ]

    async def complete(self, jobs: Sequence[ClaimedJob], results: Sequence[str | None]) -> set[int]:
        self._maybe_refuse()
        done: set[int] = set()
        for job, result in zip(jobs, results, strict=True):
            if self._held(job.id, self.worker_id, None, None):
                self._finish(job.id, "completed", self.worker_id, result=result)
                self.metrics.completed(job.task).inc()
                done.add(job.id)
            else:
                self.metrics.refused.labels(task=job.task, outcome="completed").inc()
        return done

    async def fail(
        self, jobs: Sequence[ClaimedJob], messages: Sequence[str | None], retryable: Sequence[bool]
    ) -> dict[int, str]:
        self._maybe_refuse()
        outcomes: dict[int, str] = {}
        for job, message, again in zip(jobs, messages, retryable, strict=True):
            if not self._held(job.id, self.worker_id, None, None):
                self.metrics.refused.labels(task=job.task, outcome="failed").inc()
                continue
            outcomes[job.id] = self._fail(job.id, self.worker_id, message, again)
        return outcomes

    async def release_unreachable(
        self, jobs: Sequence[ClaimedJob], delays: Sequence[float], messages: Sequence[str | None]
    ) -> set[int]:
        released: set[int] = set()
        now = self.now()
        for job, delay, message in zip(jobs, delays, messages, strict=True):
            stored = self.jobs.get(job.id)
            if stored is None or stored.locked_by != self.worker_id:
                self.metrics.refused.labels(task=job.task, outcome="released").inc()
                continue
            stored.locked_by = None
            stored.attempts = max(0, stored.attempts - 1)
            stored.run_at = now + delay
            if message is not None:
                stored.last_error = message
            released.add(job.id)
        return released

    async def await_callback(self, job: ClaimedJob, deadline: float) -> None:
        stored = self.jobs.get(job.id)
        if stored is not None and stored.locked_by == self.worker_id:
            stored.awaiting_until = self.now() + deadline
            self.metrics.awaiting(job.task).inc()

    async def notify_probe(self, token: str) -> None:
        return None

    def on_own_connection(self, timeout: float) -> MemoryStore:
        return self

    async def close(self) -> None:
        return None

    async def heartbeat(self, info: str) -> None:
        self.workers[self.worker_id] = self.now()

    async def rescue_dead_workers(
        self, dead_after: float, heard_for: float
    ) -> list[tuple[int, str, str]]:
        if heard_for < dead_after:
            return []
        now = self.now()
        heard_since = now - heard_for
        dead = {w for w, seen in self.workers.items() if max(seen, heard_since) < now - dead_after}
        for dead_id in dead:
            del self.workers[dead_id]
        victims = [
            job
            for job in self.jobs.values()
            if job.locked_by in dead and not (job.awaiting_until or 0.0) > now
        ]
        rows: list[tuple[int, str, str]] = []
        for job in victims:
            worker = job.locked_by
            assert worker is not None
            message = f"worker {worker} stopped responding"
            if job.attempts < job.max_attempts:
                job.locked_by = None
                job.awaiting_until = None
                job.last_error = message
                rows.append((job.id, worker, "retry"))
            else:
                self._finish(job.id, "failed", worker, error=message)
                rows.append((job.id, worker, "failed"))
        return rows

    async def expire_callback_deadlines(self) -> list[tuple[int, str]]:
        now = self.now()
        late = [
            job
            for job in self.jobs.values()
            if job.locked_by is not None
            and job.awaiting_until is not None
            and job.awaiting_until < now
        ]
        return [
            (job.id, self._fail(job.id, job.locked_by or "", _NO_CALLBACK, True, count=False))
            for job in late
        ]

    async def complete_attempt(self, attempt: Attempt, result: str | None) -> bool:
        a = attempt
        if not self._held(a.job_id, a.worker_id, a.attempt, a.database_id):
            return False
        task = self.jobs[a.job_id].task
        self._finish(a.job_id, "completed", a.worker_id, result=result)
        self.metrics.completed(task).inc()
        return True

    async def fail_attempt(self, attempt: Attempt, message: str, retryable: bool) -> str | None:
        a = attempt
        if not self._held(a.job_id, a.worker_id, a.attempt, a.database_id):
            return None
        return self._fail(a.job_id, a.worker_id, message, retryable)

    async def progress_attempt(self, attempt: Attempt, progress: int, message: str | None) -> bool:
        a = attempt
        if not self._held(a.job_id, a.worker_id, a.attempt, a.database_id):
            return False
        self.jobs[a.job_id].progress = progress
        return True

    async def job_state(self, job_id: int) -> tuple[str | None, int, str | None, str | None] | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        return job.locked_by, job.attempts, job.last_error, job.database_id

    async def job_finished(
        self, job_id: int
    ) -> tuple[str | None, str, int, str | None, str | None] | None:
        done = self.finished.get(job_id)
        if done is None:
            return None
        return done.worker_id, done.status, done.attempts, done.last_error, done.database_id

    # -- internals ----------------------------------------------------------------------------

    def _job(self, job: StoredJob) -> ClaimedJob:
        return ClaimedJob(
            job.id,
            job.task,
            json.dumps(job.payload).encode(),
            job.database_id,
            None,
            job.attempts,
            job.max_attempts,
        )

    def _held(
        self, job_id: int, worker_id: str, attempt: int | None, database_id: str | None
    ) -> bool:
        job = self.jobs.get(job_id)
        return (
            job is not None
            and job.locked_by == worker_id
            and (attempt is None or job.attempts == attempt)
            and (database_id is None or job.database_id == database_id)
        )

    def _finish(
        self,
        job_id: int,
        status: str,
        worker_id: str,
        *,
        result: str | None = None,
        error: str | None = None,
    ) -> None:
        job = self.jobs.pop(job_id)
        self.finished[job_id] = FinishedJob(
            job_id,
            job.task,
            status,
            worker_id,
            job.attempts,
            result=result,
            last_error=error if error is not None else job.last_error,
            database_id=job.database_id,
        )

    def _fail(
        self,
        job_id: int,
        worker_id: str,
        message: str | None,
        retryable: bool,
        *,
        count: bool = True,
    ) -> str:
        job = self.jobs[job_id]
        if not retryable or job.attempts >= job.max_attempts:
            self._finish(job_id, "failed", worker_id, error=message)
            if count:
                self.metrics.failed(job.task).inc()
            return "failed"
        job.locked_by = None
        job.awaiting_until = None
        job.last_error = message
        job.run_at = self.now() + retry_delay(job.attempts)
        if count:
            self.metrics.retried(job.task).inc()
        return "retry"
