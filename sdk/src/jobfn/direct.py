"""Running a function's jobs for the job service's worker in the same process, without HTTP.

The worker's in-process dispatch (``JOBS_INPROCESS``) hands each job to a
:class:`DirectRunner` (from :meth:`JobFunction.direct_runner <jobfn.JobFunction.direct_runner>`)
instead of going through the function's ASGI interface: no headers to build and parse, no
reply to encode and decode. The runner does what :meth:`jobfn.job_app.JobApp.handle_job` does
for a ``POST`` carrying the worker's job headers with ``X-Job-Completion: reply`` from a
vouched in-process caller (see :class:`jobfn.asgi.InProcessCaller`), and returns the same
:class:`~jobfn.types.Outcome` it would have replied with:

- the body size limit (``max_body_size``: 413, permanent), then the payload's validation
  (400/422, permanent) exactly as for a request;
- the :class:`~jobfn.JobContext` with the job's fields, its logger and progress reports sent
  to the worker's callback URL (signed with the function's secret when it has one; the
  worker's own callback URL is allowed without one, as for the vouched ASGI call);
- a ``background`` function is started in the background of its app (:attr:`JobFunction.asgi
  <jobfn.JobFunction.asgi>`, drained by its lifespan) and answers 202; it reports through the
  callback;
- the job's one log line (``jobfn.jobs``), as for a request.

Nothing is signed or verified: nothing crosses a network, and only code in this process can
call the runner.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from jobfn import protocol
from jobfn.callback_sender import CallbackChannel, CallbackTarget
from jobfn.context import JobContext
from jobfn.handler import InvalidPayloadError
from jobfn.job_app import ACCEPTED, log_job, too_large
from jobfn.types import Outcome

if TYPE_CHECKING:
    from jobfn.function import JobFunction


class DirectRunner:
    """Runs the jobs one worker (``worker_id``, ``callback_url``) dispatches in-process to
    one function (see the module docstring); the per-worker values are worked out once."""

    __slots__ = (
        "_endpoint",
        "_logger_name",
        "_refused",
        "_sender",
        "_signer",
        "callback_url",
        "fn",
        "worker_id",
    )

    def __init__(
        self, fn: JobFunction, *, worker_id: str, callback_url: str, logger_name: str
    ) -> None:
        self.fn = fn
        self.worker_id = worker_id
        self.callback_url = callback_url
        endpoint: str | None = None
        refused = False
        if callback_url and worker_id:
            try:
                endpoint = protocol.callback_endpoint(callback_url)
            except ValueError:  # not a URL: nowhere to call back
                refused = True
        self._endpoint = endpoint
        self._refused = refused
        """A background function cannot report to a callback URL that is not a URL: 400."""
        self._logger_name = logger_name
        self._sender = fn.asgi.sender
        self._signer = fn.signer

    def channel(self, ctx: JobContext) -> CallbackChannel | None:
        """The callback channel of the job of ``ctx`` (to the worker's callback URL)."""
        endpoint = self._endpoint
        if endpoint is None or ctx.job_id is None:
            return None
        target = CallbackTarget(
            endpoint, self.worker_id, ctx.job_id, ctx.database_id, str(ctx.attempt)
        )
        return CallbackChannel(self._sender, target, self._signer)

    async def run(
        self,
        body: bytes,
        *,
        job_id: str,
        task: str,
        attempt: int,
        max_attempts: int,
        database_id: str | None = None,
        actor_id: str | None = None,
        traceparent: str | None = None,
    ) -> Outcome:
        """Run one job attempt on the JSON ``body``; the outcome the function would reply
        with (a handler's exception is a failed outcome, never raised). Without a
        ``traceparent`` the attempt gets a fresh one, made only if the handler reads it."""
        started = time.perf_counter()
        fn = self.fn
        ctx = JobContext.of_attempt(
            job_id,
            self.worker_id or None,
            database_id,
            actor_id,
            task,
            attempt,
            max_attempts,
            self.callback_url or None,
            self._logger_name,
            self if self._endpoint is not None else None,
        )
        if traceparent is not None:
            ctx.traceparent = traceparent
        limit = fn.max_body_size
        if len(body) > limit:
            outcome = too_large(limit)
        elif self._refused and fn.background:
            outcome = Outcome(
                400,
                "callback_refused",
                error=f"X-Callback-Url {self.callback_url} is not allowed"
                " (JOBS_CALLBACK_ALLOWED_URLS)",
            )
        else:
            handler = fn.handler
            try:
                payload = handler.parse(body)
            except InvalidPayloadError as exc:
                outcome = exc.outcome
            else:
                if fn.background:
                    fn.asgi.start_background(payload, ctx, self.channel(ctx), started)
                    return ACCEPTED
                outcome = await handler.run(payload, ctx)
        log_job(ctx, outcome, started)
        return outcome
