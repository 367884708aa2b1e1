"""Where jobs live, as the worker and the callback server see them: the :class:`JobStore` API.

Everything the job service does to a job goes through one of these calls: claim, adopt
(find the jobs a lost claim reply locked for this worker), complete, fail, release
unreachable, await a callback, the callback server's attempt-bound settling, and the
liveness statements (heartbeat, rescue of dead workers, callback deadlines), which run on a
connection of their own (:meth:`JobStore.on_own_connection`). The store
counts what it applied (``jobs_completed_total``, ``jobs_failed_total``,
``jobs_retried_total``, ``jobs_awaiting_callback_total``, ``jobs_outcomes_refused_total``),
whether the outcome came from the worker's reply or from a function's callback.

Two implementations:

- :class:`PostgresStore` (:mod:`jobservice.store_postgres`) runs the named queries of
  ``queries.sql`` and ``callback.sql`` against the ``app_jobs`` schema;
- :class:`MemoryStore` (:mod:`jobservice.store_memory`) keeps jobs in memory with the same
  semantics the worker relies on (priority then ``run_at`` order, per-task filters, locks,
  attempts), for unit tests of the worker's scheduling without a database.

A store call raises one of :data:`jobservice.retry.CONNECTION_ERRORS` when the database could
not be reached (the caller retries with backoff); other errors mean the database refused the
statement.

Outcomes the store did not apply because the job is no longer this worker's (rescued, expired,
cancelled) are *refused*: logged (``action: outcome_refused``) and counted in
``jobs_outcomes_refused_total``. An outcome missing from a statement's answer because the
statement's first reply was lost after it committed is counted as written.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from jobservice.claimed_job import ClaimedJob
from jobservice.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Attempt:
    """The attempt a callback settles: held by ``worker_id``, at ``attempt`` for tenant
    ``database_id`` (``None``: not checked)."""

    worker_id: str
    job_id: int
    attempt: int | None
    database_id: str | None


class JobStore(Protocol):
    """The job operations of one worker (``worker_id``) and of the callback server."""

    worker_id: str
    metrics: Metrics
    """Where the outcomes this store applies are counted."""

    async def ping(self, within: float) -> None:
        """Return when the store answers within ``within`` seconds; raise otherwise."""

    # -- the worker ---------------------------------------------------------------------------

    async def unregister(self) -> None:
        """Release the jobs this worker id holds that do not await a callback."""

    async def claim(self, tasks: list[str] | None, limit: int) -> list[ClaimedJob]:
        """Lock up to ``limit`` runnable jobs of ``tasks`` (``None``: any task) for this worker,
        each with its attempt counted."""

    async def runnable_tasks(self) -> list[str]:
        """The tasks that have runnable jobs now."""

    async def adopt(self, known: Collection[int]) -> list[ClaimedJob]:
        """The jobs locked by this worker, not awaiting a callback, whose ids are not ``known``
        (a claim whose reply was lost)."""

    async def complete(self, jobs: Sequence[ClaimedJob], results: Sequence[str | None]) -> set[int]:
        """Complete ``jobs`` with their ``results`` (JSON text); the ids written.

        A result the store cannot hold (e.g. NaN) completes its job without a result.
        """

    async def fail(
        self, jobs: Sequence[ClaimedJob], messages: Sequence[str | None], retryable: Sequence[bool]
    ) -> dict[int, str]:
        """Fail the attempts of ``jobs``; ``{job id: "retry" | "failed" | "written"}`` of the
        ones written (``"written"``: by this worker in a statement whose reply was lost)."""

    async def release_unreachable(
        self, jobs: Sequence[ClaimedJob], delays: Sequence[float], messages: Sequence[str | None]
    ) -> set[int]:
        """Give ``jobs`` back without using their attempt, runnable after ``delays`` seconds;
        a ``None`` message keeps the job's last error. The ids released."""

    async def await_callback(self, job: ClaimedJob, deadline: float) -> None:
        """``job`` answered 202: it stays locked until its callback or ``deadline`` seconds."""

    async def notify_probe(self, token: str) -> None:
        """Send ``token`` on the probe channel (the listener checks that it comes back)."""

    # -- liveness (see :mod:`jobservice.liveness`) -------------------------------------------------

    def on_own_connection(self, timeout: float) -> JobStore:
        """This store with its statements on a connection of its own, for the liveness
        statements: a busy pool never delays a heartbeat. A statement (or connecting) that
        takes longer than ``timeout`` seconds fails, and a failure drops the connection (the
        next statement opens a new one). A store with no such connection returns itself."""

    async def close(self) -> None:
        """Close the connection of its own, if any (the pool is not the store's to close)."""

    async def heartbeat(self, info: str) -> None:
        """Record that this worker is alive now; ``info`` is JSON text describing it."""

    async def rescue_dead_workers(
        self, dead_after: float, heard_for: float
    ) -> list[tuple[int, str, str]]:
        """Give back (``"retry"``) or fail for good (``"failed"``: no attempt left) the jobs of
        the workers not heard for ``dead_after`` seconds, not awaiting a callback, and forget
        those workers; ``(job id, dead worker id, outcome)`` rows. Silence is measured from the
        latest of a worker's heartbeat and the start of this caller's ``heard_for`` seconds of
        continuous contact; nothing is rescued while ``heard_for < dead_after``."""

    async def expire_callback_deadlines(self) -> list[tuple[int, str]]:
        """Fail (for a retry if attempts remain) the jobs whose callback deadline passed;
        ``(job id, "retry" | "failed")`` rows."""

    # -- the callback server --------------------------------------------------------------------

    async def complete_attempt(self, attempt: Attempt, result: str | None) -> bool:
        """Complete the job if ``attempt`` is still its current attempt; whether it was."""

    async def fail_attempt(self, attempt: Attempt, message: str, retryable: bool) -> str | None:
        """Fail ``attempt`` as :meth:`complete_attempt` would complete it; ``"retry"`` or
        ``"failed"``, or ``None`` when it did not apply."""

    async def progress_attempt(self, attempt: Attempt, progress: int, message: str | None) -> bool:
        """Record the progress of the attempt; whether it applied."""

    async def job_state(self, job_id: int) -> tuple[str | None, int, str | None, str | None] | None:
        """A queued or running job's ``(locked_by, attempts, last_error, database_id)``."""

    async def job_finished(
        self, job_id: int
    ) -> tuple[str | None, str, int, str | None, str | None] | None:
        """A finished job's ``(worker_id, status, attempts, last_error, database_id)``."""
