"""Plain data shared by the SDK's modules: the outcome of one job request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic_core import from_json

JSONValue = Any
"""Any value that serialises to JSON (what a payload parses to, what a handler may return)."""


@dataclass(slots=True)
class Outcome:
    """What became of one job request, before it is turned into a reply and a callback.

    ``label`` names the outcome in logs: ``success``, ``accepted`` (background),
    ``invalid`` (422), ``bad_request`` (400), ``too_large`` (413), ``unauthorized`` (401),
    ``permanent`` (a :class:`~jobfn.PermanentError`), ``error`` (500) or ``timeout`` (500).
    """

    status: int
    label: str = "success"
    result_json: bytes | None = None
    """The handler's return value as JSON bytes (``None`` when it returned ``None``)."""
    error: str | None = None
    retry: bool = True
    """Whether another attempt may succeed (``False`` marks a permanent failure)."""
    errors: list[dict[str, Any]] | None = None
    """Per-field validation errors of a 422."""
    exception: BaseException | None = None
    """The exception behind a failure (logged with its traceback, never sent)."""

    @property
    def ok(self) -> bool:
        """Whether the job succeeded (or, for 202, was accepted)."""
        return self.status < 400


@dataclass(frozen=True, slots=True)
class JobRun:
    """The result and metadata of a job run in-process (``fn.now(...)``, ``fn.batch(...)``)."""

    name: str
    """The function's name (task identifier)."""
    status: Literal["completed", "failed", "skipped"]
    result: Any = None
    """What the handler returned, as JSON data (``None`` when it failed or returned nothing)."""
    error: str | None = None
    retry: bool = True
    """For a failure: whether another attempt may succeed."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    exception: BaseException | None = None
    """The exception behind a failure."""

    @property
    def ok(self) -> bool:
        """Whether the run completed."""
        return self.status == "completed"

    @classmethod
    def from_outcome(
        cls,
        name: str,
        outcome: Outcome,
        started_at: datetime,
        finished_at: datetime,
        seconds: float,
    ) -> JobRun:
        """The run described by a handler's :class:`Outcome`."""
        return cls(
            name=name,
            status="completed" if outcome.ok else "failed",
            result=from_json(outcome.result_json) if outcome.result_json is not None else None,
            error=outcome.error,
            retry=outcome.retry,
            started_at=started_at,
            finished_at=finished_at,
            duration_ms=round(seconds * 1000, 3),
            exception=outcome.exception,
        )

    @classmethod
    def skipped(cls, name: str) -> JobRun:
        """A run that did not happen (``batch(..., stop_on_error=True)`` after a failure)."""
        return cls(name=name, status="skipped")
