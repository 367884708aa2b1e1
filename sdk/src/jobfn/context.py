"""JobContext: what a handler knows about the job it runs."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Protocol

import anyio.from_thread

from jobfn import protocol
from jobfn.json_logs import JobLogger

if TYPE_CHECKING:
    from jobfn.callback_sender import CallbackChannel


class CallbackSource(Protocol):
    """Makes a job's callback channel when it is first needed (see
    :meth:`JobContext.of_attempt`)."""

    def channel(self, ctx: JobContext) -> CallbackChannel | None:
        """The channel of ``ctx``'s job (``None``: nowhere to report)."""
        ...


class JobContext:
    """The job a handler runs: ids from the request headers, a logger and progress reports.

    Every field is ``None`` when the function is invoked directly (a ``POST`` without job
    headers). Build one yourself to call a handler as a plain function in tests:
    ``handler(payload, JobContext(job_id="1"))``.
    """

    __slots__ = (
        "_callback",
        "_logger",
        "_logger_name",
        "_new_trace",
        "_source",
        "_traceparent",
        "actor_id",
        "attempt",
        "callback_url",
        "database_id",
        "job_id",
        "max_attempts",
        "task",
        "worker_id",
    )

    def __init__(
        self,
        *,
        job_id: str | None = None,
        worker_id: str | None = None,
        database_id: str | None = None,
        actor_id: str | None = None,
        task: str | None = None,
        attempt: int | None = None,
        max_attempts: int | None = None,
        callback_url: str | None = None,
        traceparent: str | None = None,
        logger_name: str = "jobfn.handler",
        callback: CallbackChannel | None = None,
        new_trace: bool = False,
    ) -> None:
        """``new_trace`` without a ``traceparent``: this attempt gets a fresh one (a new trace),
        made when it is first read."""
        self.job_id = job_id
        """The job's id (decimal text), from ``X-Job-Id``."""
        self.worker_id = worker_id
        """The worker that dispatched the job, from ``X-Worker-Id``."""
        self.database_id = database_id
        """The tenant database of the job, from ``X-Database-Id``."""
        self.actor_id = actor_id
        """The user on whose behalf the job runs, from ``X-Actor-Id``."""
        self.task = task
        """The task identifier (``X-Task-Identifier``, else the function's name)."""
        self.attempt = attempt
        """This attempt's number, starting at 1 (``X-Job-Attempt``)."""
        self.max_attempts = max_attempts
        """How many attempts the job has in all (``X-Job-Max-Attempts``)."""
        self.callback_url = callback_url
        """Where the function reports the outcome (``X-Callback-Url``)."""
        self._traceparent = traceparent
        self._new_trace = new_trace
        self._logger_name = logger_name
        self._logger: JobLogger | None = None
        self._callback = callback
        """Where progress reports go (``None``: the request named no callback URL)."""
        self._source: CallbackSource | None = None

    @classmethod
    def of_attempt(  # noqa: PLR0917 (positional: the cheap constructor)
        cls,
        job_id: str,
        worker_id: str | None,
        database_id: str | None,
        actor_id: str | None,
        task: str,
        attempt: int,
        max_attempts: int,
        callback_url: str | None,
        logger_name: str,
        source: CallbackSource | None,
    ) -> JobContext:
        """The context of one attempt dispatched in this process (:mod:`jobfn.direct`): the
        same as the keyword constructor with ``new_trace=True``, built for a fraction of its
        cost; ``source`` makes the callback channel when a progress report first needs it."""
        ctx = object.__new__(cls)
        ctx.job_id = job_id
        ctx.worker_id = worker_id
        ctx.database_id = database_id
        ctx.actor_id = actor_id
        ctx.task = task
        ctx.attempt = attempt
        ctx.max_attempts = max_attempts
        ctx.callback_url = callback_url
        ctx._traceparent = None
        ctx._new_trace = True
        ctx._logger_name = logger_name
        ctx._logger = None
        ctx._callback = None
        ctx._source = source
        return ctx

    def _channel(self) -> CallbackChannel | None:
        channel = self._callback
        if channel is None and self._source is not None:
            channel = self._callback = self._source.channel(self)
            self._source = None
        return channel

    @property
    def traceparent(self) -> str | None:
        """The W3C trace context of this attempt (``traceparent`` header)."""
        value = self._traceparent
        if value is None and self._new_trace:
            value = self._traceparent = new_traceparent()
        return value

    @traceparent.setter
    def traceparent(self, value: str | None) -> None:
        self._traceparent = value

    @property
    def fields(self) -> dict[str, object]:
        """The job's fields that are set, as attached to its log lines."""
        candidates: dict[str, object] = {
            "job_id": self.job_id,
            "task": self.task,
            "database_id": self.database_id,
            "worker_id": self.worker_id,
            "actor_id": self.actor_id,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
        }
        return {key: value for key, value in candidates.items() if value is not None}

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines carry this job's fields (``job_id``, ``task``, ...)."""
        if self._logger is None:
            self._logger = JobLogger(logging.getLogger(self._logger_name), self.fields)
        return self._logger

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure now fails the job for good (``False`` when unknown)."""
        return (
            self.attempt is not None
            and self.max_attempts is not None
            and self.attempt >= self.max_attempts
        )

    async def progress(self, percent: float, message: str | None = None) -> bool:
        """Report progress (0-100) through the callback; whether it was delivered.

        Does nothing (returns ``False``) when the request named no callback URL. A progress
        report does not end the job; delivery problems are logged, never raised.
        """
        body = _progress_body(percent, message)
        channel = self._channel()
        if channel is None:
            return False
        return await channel.send(body, error=False, attempts=2)

    def progress_sync(self, percent: float, message: str | None = None) -> bool:
        """:meth:`progress` for a synchronous handler (which the SDK runs in a thread)."""
        _progress_body(percent, message)
        if self._channel() is None:
            return False
        return anyio.from_thread.run(self.progress, percent, message)

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self.fields.items())
        return f"JobContext({inner})"


def new_traceparent() -> str:
    """A fresh W3C ``traceparent``: version 00, random trace and span ids, sampled."""
    raw = os.urandom(24).hex()
    return f"00-{raw[:32]}-{raw[32:]}-01"


def _progress_body(percent: float, message: str | None) -> bytes:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise TypeError(f"progress percent must be a number (got {percent!r})")
    if not 0 <= percent <= 100:
        raise ValueError(f"progress percent must be between 0 and 100 (got {percent})")
    return protocol.progress_body(round(percent), message)
