"""The chaos run: jobs of five kinds of function through real worker processes while workers are
SIGKILLed and restarted, PostgreSQL backends terminated, PostgreSQL restarted and held down past
JOBS_DEAD_WORKER_AFTER, and the function server stopped. Every job must end completed or failed
for good with its error: none lost, none stuck, none delivered to a second worker while the
first still held it, no live worker's jobs rescued; every SIGTERM exits 0. The figures are
printed (``pytest -s`` shows them).

Short form (in ``make test``): about 1,000 jobs. Long form: ``pytest tests/chaos --chaos-long``
or ``JOBS_CHAOS_LONG=1`` (10,000 jobs, 240 s of chaos, a 60 s database outage).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch, HttpTransport

if TYPE_CHECKING:  # mypy sees tests/ as a package; pytest puts this folder on sys.path
    from tests.chaos.chaos_harness import (
        KINDS,
        Behaviour,
        ChaosFunction,
        PgCluster,
        Verdict,
        Workers,
        create_jobs_database,
        db_retry,
        enqueue,
        judge,
        pg_cluster,
        terminate_backends,
    )
else:
    from chaos_harness import (
        KINDS,
        Behaviour,
        ChaosFunction,
        PgCluster,
        Verdict,
        Workers,
        create_jobs_database,
        db_retry,
        enqueue,
        judge,
        pg_cluster,
        terminate_backends,
    )


DBNAME = "jobs"


@dataclass(frozen=True)
class Plan:
    """The size and pace of one chaos run."""

    jobs_per_kind: int
    workers: int
    concurrency: int
    chaos_seconds: float
    step_seconds: float
    outage_seconds: float
    function_down_seconds: float
    drain_within: float
    waves: int = 8
    max_attempts: int = 3
    heartbeat: float = 1.0
    dead_after: float = 6.0


SHORT = Plan(
    jobs_per_kind=200,
    workers=3,
    concurrency=20,
    chaos_seconds=40,
    step_seconds=2.5,
    outage_seconds=8,
    function_down_seconds=3,
    drain_within=90,
)
LONG = Plan(
    jobs_per_kind=2000,
    workers=3,
    concurrency=50,
    chaos_seconds=240,
    step_seconds=5,
    outage_seconds=60,
    function_down_seconds=5,
    drain_within=240,
    waves=24,
)

CYCLE = (
    "sigkill_same_id",
    "terminate_backends",
    "stop_function",
    "sigkill_new_id",
    "restart_postgres",
    "terminate_backends",
    "sigkill_same_id",
    "sigkill_new_id",
)


def _long(config: pytest.Config) -> bool:
    return bool(config.getoption("--chaos-long")) or os.environ.get("JOBS_CHAOS_LONG") == "1"


class Driver:
    """Runs the faults one after another for ``plan.chaos_seconds``."""

    def __init__(
        self, plan: Plan, cluster: PgCluster, function: ChaosFunction, workers: Workers
    ) -> None:
        self.plan = plan
        self.cluster = cluster
        self.function = function
        self.workers = workers
        self.rng = random.Random(11)
        self.done: dict[str, int] = {}
        self.timeline: list[tuple[float, str]] = []
        self._names = (f"chaos-w{n}" for n in itertools.count(plan.workers + 1))

    def _count(self, action: str, n: int = 1) -> None:
        self.done[action] = self.done.get(action, 0) + n
        self.timeline.append((time.time(), action))

    async def run(self) -> None:
        plan = self.plan
        start = time.monotonic()
        outage_at = start + 0.4 * plan.chaos_seconds
        outage_done = False
        for action in itertools.cycle(CYCLE):
            now = time.monotonic()
            if now - start >= plan.chaos_seconds:
                break
            if not outage_done and now >= outage_at:
                outage_done = True
                self._count(f"postgres_down_{plan.outage_seconds:g}s")
                await self._in_thread(self.cluster.stop, "fast")
                await asyncio.sleep(plan.outage_seconds)  # the outage: held down past dead-after
                await self._in_thread(self.cluster.start)
            await self.act(action)
            await asyncio.sleep(plan.step_seconds * self.rng.uniform(0.6, 1.4))

    async def _in_thread(self, fn: object, *args: object) -> None:
        await asyncio.to_thread(fn, *args)  # type: ignore[arg-type]

    async def act(self, action: str) -> None:
        if action.startswith("sigkill"):
            worker_id = self.rng.choice(sorted(self.workers.live))
            old = self.workers.kill(worker_id)
            if action == "sigkill_same_id":
                self.workers.start(worker_id, old.port)
            else:
                self.workers.start(next(self._names))
        elif action == "terminate_backends":
            self._count("backends_terminated", await terminate_backends(self.cluster, DBNAME))
        elif action == "restart_postgres":
            await self._in_thread(self.cluster.stop, "immediate")
            await self._in_thread(self.cluster.start)
        elif action == "stop_function":
            await self.function.stop()
            await asyncio.sleep(self.plan.function_down_seconds)
            await self.function.start()
        self._count(action)


async def _dispatch_marks_refused_unreachable() -> bool:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dispatch = Dispatch(
        worker_id="probe-worker",
        callback_url="http://127.0.0.1:1/callback",
        concurrency=1,
        timeout_for=lambda task: 5.0,
    )
    await dispatch.start()
    try:
        job = ClaimedJob(1, "fast", b"{}", None, None, 1, 1)
        transport = HttpTransport(f"http://127.0.0.1:{port}/fast", dispatch)
        return (await transport.run(job)).unreachable
    finally:
        await dispatch.close()


async def _chaos(plan: Plan) -> Verdict:
    function = ChaosFunction(Behaviour(hang_seconds=6.0))
    verdict = Verdict(started=time.time())
    logs = tempfile.mkdtemp(prefix="jobs-chaos-logs-")
    with pg_cluster() as cluster:
        conninfo = create_jobs_database(cluster, DBNAME)
        await function.start()
        workers = Workers(
            conninfo,
            function.url,
            Path(logs),
            {
                "JOBS_CONCURRENCY": str(plan.concurrency),
                "JOBS_HEARTBEAT_INTERVAL": str(plan.heartbeat),
                "JOBS_DEAD_WORKER_AFTER": str(plan.dead_after),
                "JOBS_REQUEST_TIMEOUT": "2",
                "JOBS_CALLBACK_DEADLINE": "4",
                "JOBS_POLL_INTERVAL": "0.5",
                "JOBS_SHUTDOWN_GRACE": "10",
                "JOBS_ROUTE_BACKOFF_MIN": "0.25",
                "JOBS_ROUTE_BACKOFF_MAX": "2",
                "JOBS_METRICS_INTERVAL": "5",
                "JOBS_DB_POOL_SIZE": "4",
            },
        )
        driver = Driver(plan, cluster, function, workers)
        enqueued: list[int] = []
        try:
            for n in range(1, plan.workers + 1):
                workers.start(f"chaos-w{n}")
            chaos = asyncio.create_task(driver.run())
            # Jobs arrive in waves over the first three quarters of the chaos, so that every
            # fault meets jobs in flight.
            for wave in range(plan.waves):
                size = plan.jobs_per_kind // plan.waves + (
                    plan.jobs_per_kind % plan.waves if wave == 0 else 0
                )
                for kind in KINDS:
                    enqueued += await enqueue(conninfo, kind, size, max_attempts=plan.max_attempts)
                await asyncio.sleep(0.75 * plan.chaos_seconds / plan.waves)
            await chaos
            chaos_end = time.monotonic()
            verdict.chaos_seconds = plan.chaos_seconds
            deadline = chaos_end + plan.drain_within
            while time.monotonic() < deadline:
                rows = await db_retry(
                    conninfo,
                    "SELECT count(*), count(*) FILTER (WHERE run_at <= now()"
                    " OR locked_at IS NOT NULL) FROM app_jobs.jobs",
                )
                total, active = rows[0]
                if active == 0 and verdict.drain_runnable_seconds is None:
                    verdict.drain_runnable_seconds = time.monotonic() - chaos_end
                if total == 0:
                    verdict.drain_seconds = time.monotonic() - chaos_end
                    break
                await asyncio.sleep(0.25)
            history = await db_retry(
                conninfo,
                "SELECT job_id, status, last_error, attempts FROM app_jobs.job_history",
            )
            remaining = [
                int(r[0]) for r in await db_retry(conninfo, "SELECT id FROM app_jobs.jobs")
            ]
        finally:
            workers.stop_all(within=30)
            workers.kill_all()
            await function.close()
        verdict.exit_codes = workers.exit_codes
        verdict.actions.update(driver.done)
        verdict.timeline = [(round(t - verdict.started, 1), a) for t, a in driver.timeline]
        verdict.callbacks.update(function.callbacks)
        judge(
            verdict,
            enqueued=enqueued,
            history=[(int(a), str(b), c, int(d)) for a, b, c, d in history],
            remaining=remaining,
            deliveries=function.deliveries,
            worker_events=workers.events,
            logs=workers.log_events(),
        )
    verdict.logs = logs
    return verdict


@pytest.mark.timeout(1800)
async def test_chaos(pytestconfig: pytest.Config) -> None:
    plan = LONG if _long(pytestconfig) else SHORT
    verdict = await _chaos(plan)
    print(f"\n-- chaos ({'long' if plan is LONG else 'short'} form) --\n{verdict.figures()}")
    print(f"worker logs: {verdict.logs}; faults: {verdict.timeline}")
    assert verdict.lost == []
    assert verdict.stuck == []
    assert verdict.completed + verdict.failed == verdict.enqueued
    assert verdict.failed_without_error == []
    assert verdict.overlaps == []
    assert verdict.live_rescues == []
    assert verdict.bad_redeliveries == 0, verdict.redeliveries
    assert verdict.exit_codes
    assert {code for _, code in verdict.exit_codes} == {0}, verdict.exit_codes
    assert verdict.exit_codes[0][1] != -signal.SIGKILL
    shutil.rmtree(verdict.logs, ignore_errors=True)  # kept when a check fails
    if await _dispatch_marks_refused_unreachable():
        # With the breaker, a stopped function server costs no attempt.
        assert verdict.unreachable_logged > 0
