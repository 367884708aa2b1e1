"""In-process dispatch to a ``jobfn`` function without HTTP: :class:`DirectTransport`.

A task of ``JOBS_INPROCESS`` whose target is a ``jobfn`` :class:`~jobfn.JobFunction` runs
through the function's :class:`~jobfn.direct.DirectRunner`: the worker hands over the payload
and the job's fields, the function validates, runs and logs the job exactly as for a request
with the worker's headers, and its :class:`~jobfn.types.Outcome` becomes the verdict the reply
would have given (:func:`jobservice.verdict.of_outcome`, the reply-size cap included). No
headers are built or parsed, no reply encoded or decoded; other ASGI applications named in
``JOBS_INPROCESS`` keep going through :class:`jobservice.transport.AsgiTransport`.

What in-process dispatch promises is kept: the task's ``JOBS_TIMEOUT`` (the call is cancelled
and the attempt fails with ``timed out after … s in <target>``), the function's own timeout,
its payload size limit and validation, its log line, progress reports and background jobs
through the worker's callback URL, and its lifespan (run by the service around the worker).
Each job runs in an asyncio task of its own; the verdict is the task's result.
"""

from __future__ import annotations

import asyncio

from jobfn import JobFunction
from jobservice import verdict
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch, traceparent
from jobservice.verdict import Verdict


class DirectTransport:
    """Run ``function`` (imported as ``target``) in this process, without HTTP."""

    __slots__ = ("breaker_key", "dispatch", "function", "runner", "target", "where")

    def __init__(self, target: str, function: JobFunction, dispatch: Dispatch) -> None:
        self.target = target
        self.function = function
        self.breaker_key: str | None = None
        self.dispatch = dispatch
        self.runner = function.direct_runner(
            worker_id=dispatch.worker_id, callback_url=dispatch.callback_url
        )
        self.where = f"in-process function {target}"

    def start(self, job: ClaimedJob) -> asyncio.Future[Verdict]:
        """Run the job in a task of its own (the worker cancels it at shutdown)."""
        return asyncio.get_running_loop().create_task(self.run(job))

    async def run(self, job: ClaimedJob) -> Verdict:
        """Run the job now (within the task's timeout); its verdict."""
        seconds = self.dispatch.timeout_for(job.task)
        try:
            async with asyncio.timeout(seconds) as deadline:
                outcome = await self.runner.run(
                    job.payload,
                    job_id=str(job.id),
                    task=job.task,
                    attempt=job.attempts,
                    max_attempts=job.max_attempts,
                    database_id=job.database_id,
                    actor_id=job.actor_id,
                    traceparent=traceparent(),
                )
        except TimeoutError as exc:
            if not deadline.expired():
                return self._raised(exc)
            return verdict.failure(f"timed out after {seconds:g} s in {self.target}")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the worker's shutdown
            return verdict.failure(f"{self.where} was cancelled")
        except Exception as exc:
            return self._raised(exc)
        return verdict.of_outcome(outcome, self.where, self.dispatch.max_reply_bytes)

    def _raised(self, exc: Exception) -> Verdict:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return verdict.failure(f"{self.where} raised {detail}")
