"""In-process dispatch to a ``jobfn`` function without HTTP: :class:`DirectTransport`.

A task of ``JOBS_INPROCESS`` whose target is a ``jobfn`` :class:`~jobfn.JobFunction` runs
through the function's :class:`~jobfn.direct.DirectRunner`: the worker hands over the payload
and the job's fields, the function validates, runs and logs the job exactly as for a request
with the worker's headers, and its :class:`~jobfn.types.Outcome` becomes the verdict the reply
would have given (:func:`jobservice.verdict.of_outcome`, the reply-size cap included). No
headers are built or parsed, no reply encoded or decoded; other ASGI applications named in
``JOBS_INPROCESS`` keep going through :class:`jobservice.transport.AsgiTransport`.

What in-process dispatch promises is kept: the task's timeout (``JOBS_TASK_TIMEOUT``, else
``JOBS_REQUEST_TIMEOUT``; the call is
cancelled, at most :data:`SLICE` late, and the attempt fails with ``timed out after … s in
<target>``), the function's own timeout, its payload size limit and validation, its log line,
progress reports and background jobs through the worker's callback URL, and its lifespan (run
by the service around the worker). Each job runs in an asyncio task of its own (its own
context, as for any task); the verdict is the task's result.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from jobfn import JobFunction
from jobservice import verdict
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch
from jobservice.verdict import Verdict

log = logging.getLogger("jobservice.direct")

Ended = Callable[[ClaimedJob, Verdict, "asyncio.Future[Any]"], None]
"""Told ``(job, verdict, task)`` from the job's task as it ends (see
:meth:`DirectTransport.start_then`)."""

SLICE = 0.05
"""Timeouts are grouped by the slice of time their deadline falls in (seconds): a call is
cancelled at most this long after its timeout (``JOBS_TASK_TIMEOUT`` /
``JOBS_REQUEST_TIMEOUT``)."""


class _Call:
    """One job's call: its task, and whether its deadline cancelled it."""

    __slots__ = ("slice", "task", "timed_out")

    task: asyncio.Task[Any]
    slice: set[_Call]
    """The deadline slice it is in (it leaves it when it ends)."""

    def __init__(self) -> None:
        self.timed_out = False


class Deadlines:
    """Cancels the calls still running at their deadline, with one timer per :data:`SLICE` of
    time (a job costs a set insertion, not a timer of its own)."""

    __slots__ = ("_slices",)

    def __init__(self) -> None:
        self._slices: dict[int, set[_Call]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, call: _Call, seconds: float) -> set[_Call]:
        """Cancel ``call.task`` in ``seconds`` unless it leaves the returned set first."""
        key = math.ceil((loop.time() + seconds) / SLICE)
        calls = self._slices.get(key)
        if calls is None:
            calls = self._slices[key] = set()
            loop.call_at(key * SLICE, self._expire, key)
        calls.add(call)
        return calls

    def _expire(self, key: int) -> None:
        for call in self._slices.pop(key, ()):
            call.timed_out = True
            call.task.cancel()


class DirectTransport:
    """Run ``function`` (imported as ``target``) in this process, without HTTP."""

    __slots__ = ("_deadlines", "breaker_key", "dispatch", "function", "runner", "target", "where")

    def __init__(self, target: str, function: JobFunction, dispatch: Dispatch) -> None:
        self.target = target
        self.function = function
        self.breaker_key: str | None = None
        self.dispatch = dispatch
        self.runner = function.direct_runner(
            worker_id=dispatch.worker_id, callback_url=dispatch.callback_url
        )
        self.where = f"in-process function {target}"
        self._deadlines = Deadlines()

    def start(self, job: ClaimedJob) -> asyncio.Future[Verdict]:
        """Run the job in a task of its own (the worker cancels it at shutdown)."""
        return self._spawn(job, None)

    def start_then(self, job: ClaimedJob, ended: Ended) -> asyncio.Task[Verdict]:
        """:meth:`start`, telling ``ended(job, verdict, task)`` from the job's task itself as
        it ends (not when it is cancelled): no future to resolve, no callback to schedule."""
        return self._spawn(job, ended)

    async def run(self, job: ClaimedJob) -> Verdict:
        """``await start(job)``."""
        return await self.start(job)

    def _spawn(self, job: ClaimedJob, ended: Ended | None) -> asyncio.Task[Verdict]:
        loop = asyncio.get_running_loop()
        seconds = self.dispatch.timeout_for(job.task)
        call = _Call()
        call.task = task = loop.create_task(self._call(job, call, seconds, ended))
        call.slice = self._deadlines.add(loop, call, seconds)
        return task

    async def _call(
        self, job: ClaimedJob, call: _Call, seconds: float, ended: Ended | None
    ) -> Verdict:
        try:
            outcome = await self.runner.run(
                job.payload,
                job_id=str(job.id),
                task=job.task,
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                database_id=job.database_id,
                actor_id=job.actor_id,
            )
        except asyncio.CancelledError:
            if call.timed_out:
                result = verdict.failure(f"timed out after {seconds:g} s in {self.target}")
            elif call.task.cancelling():
                raise  # the worker's shutdown
            else:
                result = verdict.failure(f"{self.where} was cancelled")
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            result = verdict.failure(f"{self.where} raised {detail}")
        else:
            result = verdict.of_outcome(outcome, self.where, self.dispatch.max_reply_bytes)
        finally:
            call.slice.discard(call)
        if ended is not None:
            try:
                ended(job, result, call.task)
            except Exception:  # the worker's bug: logged, the job's task ends cleanly
                log.exception("error handling a verdict", extra={"action": "verdict_error"})
        return result
