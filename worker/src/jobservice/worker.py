"""The worker: claim jobs in batches, run them concurrently, settle their outcomes in batches.

It manages slots over a :class:`~jobservice.store.JobStore` (where jobs live) and the
:class:`~jobservice.routing.Router` (which :class:`~jobservice.transport.Transport` runs each
task): running a job is ``verdict = await router.route(job.task).run(job)`` (a direct
in-process job, :class:`~jobservice.direct.DirectTransport`, reports its verdict from its own
task instead: no future and no callback per job).

- Wakes on ``LISTEN "jobs:insert"`` (:mod:`jobservice.listener`, when given one) and polls
  every ``poll_interval`` seconds as a fallback.
- Claims up to its free slots plus a prefetch buffer (jobs claimed ahead, started the moment a
  slot frees; refilled when half empty; by default sized by :mod:`jobservice.pacing` from the
  measured job and claim durations: large for fast jobs, 1 for slow ones), at
  most ``claim_batch`` per ``claim_jobs`` statement; runs
  them under the global ``concurrency`` and the per-task limits. A task at its limit is left
  out of the next claims; jobs of it that one claim returned beyond the limit wait in memory
  (without holding a global slot) until that task has room.
- Outcomes are written in batches by :class:`jobservice.settle.Settler` through the store
  (202 replies get ``await_callback``).
- Database errors never stop it: every statement is retried with backoff; when a claim's reply
  was lost, the jobs that the store locked for this worker are found and run
  (``JobStore.adopt``), so nothing stays locked by a live worker without running.
- A task identifier that cannot name a function (:class:`~jobservice.routing.InvalidTaskError`)
  fails its job for good with that message.
- A dispatch that did not reach its function (``Verdict.unreachable``) uses no attempt: the
  job is released (``JobStore.release_unreachable``) and the route's breaker
  (:mod:`jobservice.breaker`) opens: the jobs this worker holds for that route are released
  too, its tasks are left out of claims until the breaker half-opens, and jobs of other routes
  keep running.
- :meth:`Worker.run` returns after ``stop`` is set: it stops claiming, lets in-flight jobs finish
  for at most ``shutdown_grace`` seconds, writes their outcomes and releases the rest
  (``JobStore.unregister``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from functools import partial
from typing import Any

from jobservice.aio import wait_event
from jobservice.breaker import Breakers
from jobservice.claimed_job import ClaimedJob
from jobservice.config import Settings
from jobservice.direct import DirectTransport
from jobservice.listener import Listener
from jobservice.liveness import Liveness
from jobservice.logs import event
from jobservice.pacing import auto_prefetch
from jobservice.retry import DB_ERRORS, Backoff
from jobservice.routing import InvalidTaskError, Router
from jobservice.settle import Settler
from jobservice.store import JobStore
from jobservice.verdict import Kind, Verdict, failure

log = logging.getLogger("jobservice.worker")


class Worker:
    """One worker process's job loop (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        router: Router,
        *,
        listener: Listener | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        """``listener`` wakes the worker on new jobs (it is run by its owner, e.g. the service);
        ``liveness`` heartbeats and rescues (run by the worker). Without them the worker polls
        and does not heartbeat (unit tests)."""
        self.settings = settings
        self.store = store
        self.router = router
        self.metrics = store.metrics
        self.worker_id = settings.worker_id
        self.listener = listener
        if listener is not None:
            listener.subscribe(self.wake)
        self.liveness = liveness
        self.ready = asyncio.Event()
        """Set once the worker has registered and started claiming."""

        self._limits = dict(settings.task_concurrency)
        self._task_running: dict[str, int] = {}
        self._waiting: dict[str, deque[ClaimedJob]] = {}
        self._running = 0
        self._n_waiting = 0
        self._ready: deque[ClaimedJob] = deque()
        self._job_seconds: float | None = None
        self._claim_seconds: float | None = None
        self._runnable_tasks: list[str] = []
        self._runnable_at = -1e9
        self._known: set[int] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        """The dispatches in flight (cancelled at shutdown once the grace is over)."""
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._adopt = False
        self.breakers = Breakers(
            base=settings.route_backoff_min, cap=max(settings.route_backoff_max, 0.001)
        )
        self._open_routes: set[str] = set()
        self._probe_claimed_at = -1e9

        self.settler = Settler(
            store,
            batch=settings.settle_batch,
            delay=settings.settle_delay,
            callback_deadline=settings.callback_deadline,
        )

    # -- public --------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for jobs now (called on notifications)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Jobs claimed by this worker and not finished yet."""
        return self._running + self._n_waiting + len(self._ready)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then shut down cleanly (see the module docstring)."""
        await self.router.start()
        try:
            if not await self._register(stop):
                return
            liveness_stop = asyncio.Event()
            liveness = asyncio.create_task(self._liveness(liveness_stop), name="jobs-liveness")
            flusher = asyncio.create_task(self.settler.run(), name="jobs-flusher")
            claimer = asyncio.create_task(self._claim_loop(), name="jobs-claimer")
            event(
                log,
                logging.INFO,
                "worker_started",
                f"worker {self.worker_id} looking for jobs",
                worker_id=self.worker_id,
                concurrency=self.settings.concurrency,
                tasks=self.router.task_filter,
            )
            self.ready.set()
            await stop.wait()
            await self._shutdown(claimer, flusher, liveness, liveness_stop)
        finally:
            await self.router.close()

    async def _liveness(self, stop: asyncio.Event) -> None:
        if self.liveness is not None:
            await self.liveness.run(stop)

    # -- start and stop --------------------------------------------------------------------

    async def _register(self, stop: asyncio.Event) -> bool:
        """Release what a previous process with this id held, then heartbeat; retry.

        ``unregister_worker`` (not ``release_jobs``) so that jobs awaiting a callback stay
        locked: their callbacks, which name this worker id, still settle them.
        """
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self.store.unregister()
                if self.liveness is not None:
                    await self.liveness.heartbeat()
                return True
            except DB_ERRORS as exc:
                event(log, logging.WARNING, "db_unavailable", f"database not reachable: {exc}")
                if await wait_event(stop, backoff.next()):
                    break
        return False

    async def _shutdown(
        self,
        claimer: asyncio.Task[None],
        flusher: asyncio.Task[None],
        liveness: asyncio.Task[None],
        liveness_stop: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace
        self._stopping = True
        self._wake.set()
        self._slot_freed.set()
        await claimer
        # Jobs waiting for a per-task slot never started: they are released below.
        for queue in self._waiting.values():
            while queue:
                self._known.discard(queue.popleft().id)
        self._n_waiting = 0
        while self._ready:
            self._known.discard(self._ready.popleft().id)
        if self._running == 0:
            self._idle.set()
        event(
            log,
            logging.INFO,
            "worker_stopping",
            f"stopping: waiting for {self._running} job(s)",
            worker_id=self.worker_id,
            in_flight=self._running,
        )
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            event(
                log,
                logging.WARNING,
                "shutdown_grace_exceeded",
                f"{self._running} job(s) still running; they are released",
                worker_id=self.worker_id,
            )
        # Write what is known, for at most the rest of the grace (or 5 s).
        try:
            await asyncio.wait_for(self.settler.drain(), max(5.0, deadline - loop.time()))
        except TimeoutError:
            event(log, logging.ERROR, "outcomes_unwritten", "could not write every outcome")
        flusher.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, flusher, return_exceptions=True)
        liveness_stop.set()
        await liveness
        try:
            await asyncio.wait_for(self.store.unregister(), 5.0)
        except (TimeoutError, *DB_ERRORS) as exc:
            event(log, logging.ERROR, "unregister_failed", f"could not release jobs: {exc}")
        if self.liveness is not None:
            await self.liveness.close()
        event(log, logging.INFO, "worker_stopped", "worker stopped", worker_id=self.worker_id)

    # -- claiming ----------------------------------------------------------------------------

    def _prefetch(self) -> int:
        """Jobs to hold ahead of free slots: ``JOBS_PREFETCH``, or
        :func:`~jobservice.pacing.auto_prefetch` of the measured job and claim durations."""
        fixed = self.settings.prefetch
        if fixed is not None:
            return fixed
        concurrency = self.settings.concurrency
        if self._job_seconds is None or self._claim_seconds is None:
            return concurrency
        return auto_prefetch(
            concurrency=concurrency,
            claim_seconds=self._claim_seconds,
            job_seconds=self._job_seconds,
            claim_batch=self.settings.claim_batch,
        )

    def _room(self, prefetch: int) -> int:
        """How many more jobs this worker may hold (running, waiting or prefetched)."""
        held = self._running + self._n_waiting + len(self._ready)
        return self.settings.concurrency + prefetch - held

    async def _claim_loop(self) -> None:
        batch = self.settings.claim_batch
        poll = self.settings.poll_interval
        backoff = Backoff()
        while not self._stopping:
            # Refill the prefetch buffer when half empty (fewer, larger claims).
            prefetch = self._prefetch()
            threshold = max(1, prefetch // 2)
            room = self._room(prefetch)
            if room <= 0 or (room < threshold and self._running + len(self._ready) > 0):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                # Let the other jobs finishing in this loop iteration free their slots too.
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            want = min(room, batch)
            try:
                if self.settler.take_refusal():
                    self._adopt = True  # outcomes refused: those jobs are still locked by us
                if self._adopt:
                    await self._adopt_lost()
                jobs = await self._claim(want)
                backoff.reset()
            except DB_ERRORS as exc:
                self._adopt = True
                event(log, logging.WARNING, "claim_failed", f"claim failed: {exc}")
                await self._sleep_unless_stopping(backoff.next())
                continue
            except Exception:  # a bug must not stop the worker from claiming
                log.exception("claim loop error", extra={"action": "claim_error"})
                await self._sleep_unless_stopping(backoff.next())
                continue
            if len(jobs) < want and not self._stopping:
                await wait_event(self._wake, poll)

    async def _task_filter(self) -> list[str] | None:
        """The claim's task list: the supported tasks minus those at their per-task limit.

        With ``JOBS_SUPPORT_ANY`` and a saturated task, the tasks that have runnable jobs are
        read (at most once per poll interval) so the saturated one can be left out.
        """
        base = self.router.task_filter
        saturated = [t for t, n in self._limits.items() if self._task_running.get(t, 0) >= n]
        if self._open_routes:
            saturated += self.breakers.blocked_tasks()
        if not saturated:
            return base
        if base is None:
            now = time.monotonic()
            if now - self._runnable_at > self.settings.poll_interval:
                self._runnable_tasks = await self.store.runnable_tasks()
                self._runnable_at = now
            base = self._runnable_tasks
        return [t for t in base if t not in saturated]

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        started = time.perf_counter()
        tasks = await self._task_filter()
        jobs: list[ClaimedJob] = []
        if tasks is None or tasks:
            jobs = await self.store.claim(tasks, limit)
            # a claim ran: its time sizes the prefetch
            elapsed = time.perf_counter() - started
            previous = self._claim_seconds
            self._claim_seconds = elapsed if previous is None else 0.8 * previous + 0.2 * elapsed
        if self._open_routes and len(jobs) < limit:
            jobs += await self._claim_probe()
        self._accept(jobs)
        return jobs

    async def _claim_probe(self) -> list[ClaimedJob]:
        """One job of a half-open route (at most one claim per poll interval)."""
        now = time.monotonic()
        due = self.breakers.probe_due(now)
        if not due or now - self._probe_claimed_at < self.settings.poll_interval:
            return []
        self._probe_claimed_at = now
        tasks = sorted(set().union(*due.values()))
        jobs = await self.store.claim(tasks, 1)
        for job in jobs:
            key = self._breaker_key(job.task)
            if key is not None:
                self.breakers.probing(key)
        return jobs

    async def _adopt_lost(self) -> None:
        """Run the jobs locked for this worker by a claim whose reply never arrived."""
        jobs = await self.store.adopt(self._known | self.settler.unwritten)
        self._adopt = False
        if jobs:
            event(
                log,
                logging.WARNING,
                "jobs_adopted",
                f"{len(jobs)} job(s) claimed by a lost reply are run now",
                job_ids=[job.id for job in jobs],
            )
        self._accept(jobs)

    def _accept(self, jobs: list[ClaimedJob]) -> None:
        if not jobs:
            return
        self._idle.clear()
        concurrency = self.settings.concurrency
        ready = self._ready
        per_task: dict[str, int] = {}
        for job in jobs:
            self._known.add(job.id)
            per_task[job.task] = per_task.get(job.task, 0) + 1
            if self._running < concurrency and not ready:
                self._start(job)
            else:
                ready.append(job)

        for task, n in per_task.items():
            self.metrics.claimed(task).inc(n)

    def _start(self, job: ClaimedJob) -> None:
        limit = self._limits.get(job.task)
        if limit is not None:
            running = self._task_running.get(job.task, 0)
            if running >= limit:
                self._waiting.setdefault(job.task, deque()).append(job)
                self._n_waiting += 1
                return
            self._task_running[job.task] = running + 1
        self._running += 1
        self._run(job)

    # -- running ------------------------------------------------------------------------------

    def _run(self, job: ClaimedJob) -> None:
        """Dispatch ``job`` through its transport; :meth:`_verdict` gets the verdict."""
        started = time.perf_counter()
        try:
            transport = self.router.route(job.task)
        except InvalidTaskError as exc:  # no function can be named by it: never retried
            verdict = failure(str(exc), permanent=True)
            asyncio.get_running_loop().call_soon(self._finish, job, started, verdict)
            return
        if type(transport) is DirectTransport:  # the common in-process case, made cheap
            job.started = started
            self._tasks.add(transport.start_then(job, self._ended))
            return
        reply = transport.start(job)
        self._tasks.add(reply)
        reply.add_done_callback(partial(self._verdict, job, started, transport.breaker_key))

    def _ended(self, job: ClaimedJob, verdict: Verdict, task: asyncio.Future[Any]) -> None:
        """The verdict of a direct in-process job, told by its task as it ends."""
        self._tasks.discard(task)
        self._finish(job, job.started, verdict)

    def _verdict(
        self, job: ClaimedJob, started: float, key: str | None, reply: asyncio.Future[Verdict]
    ) -> None:
        self._tasks.discard(reply)
        if reply.cancelled():  # shutdown: the job is released
            return
        exc = reply.exception()
        if exc is not None:
            if key is not None and self._open_routes:
                # a probe that ended without a reply: another may be sent
                self.breakers.probe_lost(key)
            detail = f"{type(exc).__name__}: {exc}"
            self._finish(job, started, failure(f"worker error while running the job: {detail}"))
            return
        verdict = reply.result()
        if key is not None:
            if verdict.unreachable:
                self._unreachable(job, key, verdict)
                return
            if self._open_routes:
                self._route_reached(key)
        self._finish(job, started, verdict)

    def _finish(self, job: ClaimedJob, started: float, outcome: Verdict) -> None:
        if job.finished or job.id not in self._known:
            return
        job.finished = True
        self._known.discard(job.id)  # the settler holds it until its outcome is written
        elapsed = time.perf_counter() - started
        self.metrics.duration(job.task).observe(elapsed)
        previous = self._job_seconds
        self._job_seconds = elapsed if previous is None else 0.95 * previous + 0.05 * elapsed
        kind = outcome.kind
        if kind is Kind.COMPLETED:
            self.settler.completed(job, outcome.result)
            if log.isEnabledFor(logging.DEBUG):
                event(
                    log, logging.DEBUG, "job_completed", "completed", job_id=job.id, task=job.task
                )
        elif kind is Kind.CALLBACK:
            self.settler.awaiting_callback(job)
        else:
            self.settler.failed(job, outcome.message, retryable=kind is Kind.RETRY)
            event(
                log,
                logging.INFO,
                "job_attempt_failed",
                outcome.message or "failed",
                job_id=job.id,
                task=job.task,
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                retryable=kind is Kind.RETRY,
                worker_id=self.worker_id,
            )
        self._release_slot(job.task)

    # -- unreachable functions -----------------------------------------------------------------

    def _breaker_key(self, task: str) -> str | None:
        """The breaker key of ``task``'s transport (``None``: none, or an invalid task)."""
        try:
            return self.router.route(task).breaker_key
        except InvalidTaskError:
            return None

    def _unreachable(self, job: ClaimedJob, key: str, result: Verdict) -> None:
        """``job`` never reached its function: give it back, open the route's breaker."""
        if job.finished or job.id not in self._known:
            return
        job.finished = True
        self._known.discard(job.id)  # the settler holds it until its outcome is written
        now = time.monotonic()
        opened = self.breakers.unreachable(key, job.task, now)
        delay = self.breakers.remaining(key, now)
        self.settler.unreachable(job, delay, result.message)
        self.metrics.unreachable(job.task).inc()
        event(
            log,
            logging.INFO,
            "job_unreachable",
            f"{result.message}; job released without using an attempt",
            job_id=job.id,
            task=job.task,
            attempt=job.attempts,
            route=key,
            worker_id=self.worker_id,
        )
        if opened is not None:
            self._open_routes.add(key)
            self.metrics.breaker_open.labels(route=key).set(1)
            held = self._hold_back(key, delay)
            event(
                log,
                logging.WARNING,
                "breaker_opened",
                f"function route {key} unreachable ({result.message}); no jobs for it for"
                f" {opened.seconds:.1f} s, {held} held job(s) released",
                route=key,
                task=job.task,
                job_id=job.id,
                seconds=round(opened.seconds, 3),
                failures=opened.failures,
                released=held,
                worker_id=self.worker_id,
            )
        self._release_slot(job.task)

    def _hold_back(self, key: str, delay: float) -> int:
        """Release the jobs held (prefetched or waiting for a slot) for the route ``key``."""

        def blocked(job: ClaimedJob) -> bool:
            return self._breaker_key(job.task) == key

        held = [job for job in self._ready if blocked(job)]
        if held:
            self._ready = deque(job for job in self._ready if not blocked(job))
        for task, queue in self._waiting.items():
            if queue and blocked(queue[0]):
                held += queue
                self._n_waiting -= len(queue)
                self._waiting[task] = deque()
        for job in held:
            job.finished = True
            self._known.discard(job.id)
            self.settler.unreachable(job, delay, None)
        if self._running == 0 and self._n_waiting == 0 and not self._ready:
            self._idle.set()
        return len(held)

    def _route_reached(self, key: str) -> None:
        if key in self._open_routes and self.breakers.reached(key):
            self._open_routes.discard(key)
            self.metrics.breaker_open.labels(route=key).set(0)
            event(
                log,
                logging.INFO,
                "breaker_closed",
                f"function route {key} reachable again",
                route=key,
                worker_id=self.worker_id,
            )

    def _release_slot(self, task: str) -> None:
        limit = self._limits.get(task)
        if limit is not None:
            queue = self._waiting.get(task)
            if queue and not self._stopping:
                # The next job of this task takes the slot (global and per-task counts stay).
                self._n_waiting -= 1
                nxt = queue.popleft()
                self._run(nxt)
                return
            running = self._task_running[task]
            self._task_running[task] = running - 1
            if running >= limit:
                self._wake.set()  # the task was excluded from claims; it has room again
        self._running -= 1
        ready = self._ready
        while ready and self._running < self.settings.concurrency and not self._stopping:
            self._start(ready.popleft())
        self._slot_freed.set()
        if self._running == 0 and self._n_waiting == 0:
            self._idle.set()
            self.settler.hurry()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        await wait_event(self._wake, seconds)
