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

    @classmethod
    def from_row(
        cls, row: tuple[int, str, str | None, str | None, str | None, int, int]
    ) -> ClaimedJob:
        """A job from a ``claim_jobs``/``adopt_jobs`` row (see ``queries.sql``)."""
        payload = row[2]
        return cls(
            id=row[0],
            task=row[1],
            payload=payload.encode() if payload is not None else b"null",
            database_id=row[3],
            actor_id=row[4],
            attempts=row[5],
            max_attempts=row[6],
        )
