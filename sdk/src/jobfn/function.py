"""JobFunction: what ``@job_function`` returns — the handler with its options.

Serving it is :class:`jobfn.job_app.JobApp`'s part (built from the function once, as
:attr:`JobFunction.asgi`), and running the worker's jobs in its process without HTTP is
:class:`jobfn.direct.DirectRunner`'s; running it in this process (``now``, ``batch``) and
enqueueing it (``later``) are the function's own.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, overload

from jobfn import protocol, security
from jobfn.callback_sender import CallbackChannel, CallbackPolicy, CallbackSender
from jobfn.context import JobContext
from jobfn.direct import DirectRunner
from jobfn.handler import Handler, InvalidPayloadError, inspect_handler
from jobfn.job_app import JobApp, Receive, Scope, Send, log_job
from jobfn.types import JobRun

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from jobfn.client import Job

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_SHUTDOWN_TIMEOUT = 25.0
SIGNING_SECRET_VARIABLE = security.SECRET_VARIABLE

log = logging.getLogger("jobfn")

_UNSET: Any = object()


class JobFunction:
    """A job handler with its options (name, payload type, timeout, background, secrets...).

    ``fn(payload, ctx)`` calls the plain handler. The function is served by its
    :attr:`asgi` app (a :class:`~jobfn.job_app.JobApp`); for servers given the function
    itself (``uvicorn module:fn``), ``fn(scope, receive, send)`` is forwarded to that app.
    """

    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        payload: Any = None,
        timeout: float | None = None,
        background: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        callback: CallbackPolicy | None = None,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        signing_secret: str | Sequence[str] | None = _UNSET,
        callback_allowed_urls: Sequence[str] | None = _UNSET,
        on_startup: Sequence[Callable[[], object]] = (),
        localns: Mapping[str, Any] | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"job_function timeout must be positive seconds (got {timeout})")
        if max_body_size < 1:
            raise ValueError(f"job_function max_body_size must be positive (got {max_body_size})")
        functools.update_wrapper(self, func)
        shape = inspect_handler(func, payload_type=payload, localns=localns)
        self.handler = Handler(func, shape, timeout)
        self.name: str = name or func.__name__
        """The task identifier this function serves (default: the handler's name)."""
        self.timeout = timeout
        self.background = background
        self.max_body_size = max_body_size
        self.shutdown_timeout = shutdown_timeout
        self.callback_policy = callback or CallbackPolicy()
        """How this function's callbacks are sent (timeout, attempts, backoff)."""
        self._secret_option = signing_secret
        self._signer: protocol.Signer | None = _UNSET
        self._allow_option = callback_allowed_urls
        self._allow_list: security.CallbackAllowList | None = None
        self._allow_cache: tuple[tuple[str, str], security.CallbackAllowList] | None = None
        self._asgi: JobApp | None = None
        self._logger_name = getattr(func, "__module__", None) or "jobfn.handler"
        self._on_startup = tuple(on_startup)
        self._started = False

    def start(self) -> None:
        """Run the ``on_startup`` checks, once; :class:`ConfigError` means "cannot start".

        ``jobfn serve`` / :func:`serve` call it before listening (a :class:`ConfigError` prints
        its one line and exits 2), the ASGI lifespan calls it for any other server, and the
        worker calls it when it loads the function in-process. It also reads the signing
        secrets (a malformed one is a :class:`ConfigError`) and, when there is none, logs a
        warning that the function accepts unsigned jobs.
        """
        if self._started:
            return
        signer = self.signer  # a malformed secret stops start-up here
        allow = self.callback_allow_list
        for check in self._on_startup:
            check()
        if signer is None:
            where = ", ".join(allow.entries) if allow else "nowhere (no callbacks)"
            log.warning(
                "%s is not set: function %s runs unsigned jobs from anyone who can reach it; "
                "callbacks go only to %s (JOBS_CALLBACK_ALLOWED_URLS)",
                SIGNING_SECRET_VARIABLE,
                self.name,
                where,
                extra={"action": "start", "insecure": True},
            )
        self._started = True

    def __repr__(self) -> str:
        return f"<JobFunction {self.name!r} ({self.handler.func.__qualname__})>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The plain handler; an ASGI call ``(scope, receive, send)`` goes to :attr:`asgi`."""
        if len(args) == 3 and not kwargs and isinstance(args[0], dict) and "type" in args[0]:
            return self._serve(args[0], args[1], args[2])
        return self.handler.func(*args, **kwargs)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)

    # -- serving: the ASGI app built from this function -------------------------------------

    @property
    def asgi(self) -> JobApp:
        """The ASGI app serving this function (built once)."""
        if self._asgi is None:
            self._asgi = JobApp(self)
        return self._asgi

    @property
    def app(self) -> Starlette:
        """The Starlette app of the non-job routes (``asgi.routes``)."""
        return self.asgi.routes

    @property
    def sender(self) -> CallbackSender:
        """The callback sender of :attr:`asgi`."""
        return self.asgi.sender

    @property
    def ready(self) -> bool:
        """Whether the app answers ready (``False`` while draining)."""
        return self.asgi.ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self.asgi.ready = value

    @property
    def in_flight(self) -> int:
        """How many background jobs :attr:`asgi` is running."""
        return self.asgi.in_flight

    async def drain(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """:meth:`JobApp.drain <jobfn.job_app.JobApp.drain>`: wait for the background jobs."""
        return await self.asgi.drain(timeout)

    async def aclose(self) -> None:
        """Close the callback client of :attr:`asgi`."""
        await self.asgi.aclose()

    @property
    def payload_type(self) -> Any:
        """The payload's type (a pydantic model, ``dict``...), ``None`` for any JSON value."""
        return self.handler.shape.payload_type

    @property
    def signer(self) -> protocol.Signer | None:
        """Signs callbacks and verifies dispatches; ``None`` when the function has no secret.

        The secrets are the ``signing_secret`` option, else ``JOBS_SIGNING_SECRET`` (or
        ``JOBS_SIGNING_SECRET_FILE``) and ``JOBS_SIGNING_SECRET_PREVIOUS`` (or ``..._FILE``),
        read once; a malformed one raises :class:`~jobfn.ConfigError` naming the variable.
        """
        if self._signer is _UNSET:
            secrets = self._secrets()
            self._signer = protocol.Signer(secrets) if secrets else None
        signer: protocol.Signer | None = self._signer
        return signer

    def _secrets(self) -> list[str]:
        option = self._secret_option
        if option is _UNSET:
            return security.signing_secrets()
        if option is None:
            return []
        return [option] if isinstance(option, str) else list(option)

    @property
    def signing_secret(self) -> str | None:
        """The current signing secret (see :attr:`signer`), or ``None``."""
        if self.signer is None:
            return None
        return self._secrets()[0]

    @property
    def callback_allow_list(self) -> security.CallbackAllowList:
        """Where callbacks may go when the function has no secret: the
        ``callback_allowed_urls`` option, else the environment (see
        :func:`jobfn.security.callback_allow_list`; re-parsed only when it changes)."""
        option = self._allow_option
        if option is not _UNSET:
            if self._allow_list is None:
                self._allow_list = security.CallbackAllowList(list(option or ()))
            return self._allow_list
        key = security.allow_list_key()
        cached = self._allow_cache
        if cached is None or cached[0] != key:
            cached = self._allow_cache = (key, security.callback_allow_list())
        return cached[1]

    def context_for(
        self, job: protocol.JobHeaders, *, callback: CallbackChannel | None = None
    ) -> JobContext:
        """The :class:`JobContext` of a request with these job headers, reporting progress
        through ``callback``."""
        return JobContext(
            job_id=job.job_id,
            worker_id=job.worker_id,
            database_id=job.database_id,
            actor_id=job.actor_id,
            task=job.task or self.name,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            callback_url=job.callback_url,
            traceparent=job.traceparent,
            logger_name=self._logger_name,
            callback=callback,
        )

    def direct_runner(self, *, worker_id: str, callback_url: str) -> DirectRunner:
        """A runner of this function's jobs for the job service's worker in this process
        (``worker_id``, reporting to ``callback_url``): what a dispatch through :attr:`asgi`
        does, without HTTP (see :mod:`jobfn.direct`). Call :meth:`start` first."""
        return DirectRunner(
            self, worker_id=worker_id, callback_url=callback_url, logger_name=self._logger_name
        )

    # -- in-process runs and enqueueing ------------------------------------------------------

    async def now(self, payload: Any = None, *, ctx: JobContext | None = None) -> JobRun:
        """Run the job in this process now; its result with status, timings and error.

        The payload is validated like a request's; failures are reported in the returned
        :class:`JobRun` (``status="failed"``), never raised.
        """
        ctx = ctx or JobContext(task=self.name, logger_name=self._logger_name)
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        try:
            value = self.handler.coerce({} if payload is None else payload)
        except InvalidPayloadError as exc:
            outcome = exc.outcome
        else:
            outcome = await self.handler.run(value, ctx)
        log_job(ctx, outcome, clock)
        return JobRun.from_outcome(
            self.name, outcome, started_at, datetime.now(UTC), time.perf_counter() - clock
        )

    async def batch(
        self,
        payloads: Iterable[Any],
        *,
        concurrency: int = 5,
        stop_on_error: bool = False,
    ) -> list[JobRun]:
        """Run the job on each payload in this process, ``concurrency`` at a time.

        Returns one :class:`JobRun` per payload, in order. With ``stop_on_error``, payloads not
        yet started when a run fails are not run (``status="skipped"``).
        """
        if concurrency < 1:
            raise ValueError(f"batch concurrency must be at least 1 (got {concurrency})")
        items = list(payloads)
        runs: list[JobRun | None] = [None] * len(items)
        next_index = 0
        failed = False

        async def lane() -> None:
            nonlocal next_index, failed
            while next_index < len(items) and not (stop_on_error and failed):
                index = next_index
                next_index += 1
                run = await self.now(items[index])
                runs[index] = run
                if run.status == "failed":
                    failed = True

        await asyncio.gather(*(lane() for _ in range(min(concurrency, len(items)) or 1)))
        return [run or JobRun.skipped(self.name) for run in runs]

    async def later(self, payload: Any = None, **options: Any) -> Job:
        """Enqueue the job (task = this function's name); needs ``jobfn[client]``.

        ``options`` are those of :func:`jobfn.client.add_job_async` (``conninfo``,
        ``database_id``, ``job_key``, ``queue_name``, ``run_at``, ``max_attempts``,
        ``priority``, ``actor_id``, ``schema``...).
        """
        from jobfn import client

        return await client.add_job_async(self.name, self._enqueue_payload(payload), **options)

    def later_sync(self, payload: Any = None, **options: Any) -> Job:
        """:meth:`later` for synchronous code."""
        from jobfn import client

        return client.add_job(self.name, self._enqueue_payload(payload), **options)

    def _enqueue_payload(self, payload: Any) -> Any:
        if payload is None:
            return {}
        try:
            value = self.handler.coerce(payload)
        except InvalidPayloadError as exc:
            raise ValueError(f"payload for job {self.name!r}: {exc.outcome.error}") from exc
        adapter = self.handler.adapter
        return adapter.dump_python(value, mode="json") if adapter is not None else value


def _mark_asgi3(func: Callable[..., Any]) -> None:
    """Let servers that sniff the interface (uvicorn) see an ASGI 3 app."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # Python 3.12+
        mark(func)
    else:
        func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


_mark_asgi3(JobFunction.__call__)


HandlerT = Callable[..., Any] | Callable[..., Awaitable[Any]]


@overload
def job_function(func: HandlerT, /) -> JobFunction: ...


@overload
def job_function(
    *,
    name: str | None = None,
    payload: Any = None,
    timeout: float | None = None,
    background: bool = False,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    callback: CallbackPolicy | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    signing_secret: str | Sequence[str] | None = ...,
    callback_allowed_urls: Sequence[str] | None = ...,
    on_startup: Sequence[Callable[[], object]] = (),
) -> Callable[[HandlerT], JobFunction]: ...


def job_function(
    func: HandlerT | None = None,
    /,
    *,
    name: str | None = None,
    payload: Any = None,
    timeout: float | None = None,
    background: bool = False,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    callback: CallbackPolicy | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    signing_secret: str | Sequence[str] | None = _UNSET,
    callback_allowed_urls: Sequence[str] | None = _UNSET,
    on_startup: Sequence[Callable[[], object]] = (),
) -> JobFunction | Callable[[HandlerT], JobFunction]:
    """Turn ``handler(payload, ctx)`` (sync or async) into a :class:`JobFunction`.

    Use bare (``@job_function``) or with options:

    - ``name``: the task identifier (default: the handler's name);
    - ``payload``: the payload type when the handler's annotation is not it;
    - ``timeout``: seconds the handler may run before the attempt fails (retryable);
    - ``background``: answer ``202`` at once and report the outcome through the callback;
    - ``max_body_size``: largest accepted request body in bytes (default 1 MiB; larger → 413);
    - ``callback``: a :class:`CallbackPolicy` (timeout, attempts, backoff);
    - ``shutdown_timeout``: seconds background jobs may take to finish on shutdown;
    - ``signing_secret``: overrides ``JOBS_SIGNING_SECRET`` / ``_PREVIOUS`` (a secret or a
      list, current first; ``None``: no signatures). With a secret, an unsigned or badly
      signed request is answered 401 and runs nothing;
    - ``callback_allowed_urls``: overrides ``JOBS_CALLBACK_ALLOWED_URLS``, the origins or URL
      prefixes a function *without* a secret may send callbacks to (others: 400, nothing runs);
    - ``on_startup``: callables run once before the function takes jobs (e.g. checking its
      environment); raising :class:`ConfigError` stops start-up with that one line.
    """
    localns = sys._getframe(1).f_locals

    def decorate(handler: HandlerT) -> JobFunction:
        return JobFunction(
            handler,
            name=name,
            payload=payload,
            timeout=timeout,
            background=background,
            max_body_size=max_body_size,
            callback=callback,
            shutdown_timeout=shutdown_timeout,
            signing_secret=signing_secret,
            callback_allowed_urls=callback_allowed_urls,
            on_startup=on_startup,
            localns=localns,
        )

    if func is not None:
        return decorate(func)
    return decorate
