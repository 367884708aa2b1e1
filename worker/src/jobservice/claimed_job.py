"""A claimed job, as the worker holds it in memory (not the SDK's ``jobfn.client.Job``, a job
as its enqueuer sees it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ClaimedJob:
    """One claimed job: the columns the worker needs, the payload as raw JSON bytes."""

    id: int
    task: str
    payload: bytes
    database_id: str | None
    actor_id: str | None
    attempts: int
    max_attempts: int
    finished: bool = False
    """Set when the outcome is known (an outcome is taken once)."""
    started: float = 0.0
    """When its dispatch started (``time.perf_counter()``)."""

    @classmethod
    def from_row(
        cls, row: tuple[int, str, str | None, str | None, str | None, int, int]
    ) -> ClaimedJob:
        """A job from a ``claim_jobs``/``adopt_jobs`` row (see ``queries.sql``)."""
        job_id, task, payload, database_id, actor_id, attempts, max_attempts = row
        return cls(
            job_id,
            task,
            payload.encode() if payload is not None else b"null",
            database_id,
            actor_id,
            attempts,
            max_attempts,
        )
