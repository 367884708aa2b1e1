"""A database outage longer than JOBS_DEAD_WORKER_AFTER, with live workers holding jobs: no job
is rescued from a live worker, none runs twice (real PostgreSQL stopped and started, real
``jobs worker`` processes, a real function server)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy sees tests/ as a package; pytest puts this folder on sys.path
    from tests.chaos.chaos_harness import (
        Behaviour,
        ChaosFunction,
        Workers,
        create_jobs_database,
        db_retry,
        enqueue,
        pg_cluster,
    )
else:
    from chaos_harness import (
        Behaviour,
        ChaosFunction,
        Workers,
        create_jobs_database,
        db_retry,
        enqueue,
        pg_cluster,
    )


DEAD_AFTER = 3.0
HEARTBEAT = 0.5


async def _until(check: Callable[[], Awaitable[bool]], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_a_database_outage_longer_than_dead_after_rescues_no_live_worker() -> None:
    hold = asyncio.Event()
    function = ChaosFunction(Behaviour(hold=hold))
    with pg_cluster() as cluster, tempfile.TemporaryDirectory() as logs:
        conninfo = create_jobs_database(cluster)
        await function.start()
        workers = Workers(
            conninfo,
            function.url,
            Path(logs),
            {
                "JOBS_CONCURRENCY": "5",
                "JOBS_HEARTBEAT_INTERVAL": str(HEARTBEAT),
                "JOBS_DEAD_WORKER_AFTER": str(DEAD_AFTER),
                "JOBS_POLL_INTERVAL": "0.2",
                "JOBS_PREFETCH": "0",
                "JOBS_REQUEST_TIMEOUT": "120",
            },
        )
        try:
            workers.start("outage-worker-1")
            workers.start("outage-worker-2")
            job_ids = await enqueue(conninfo, "hold", 8, max_attempts=5)

            async def all_delivered() -> bool:
                return len(function.deliveries) >= 8

            await _until(all_delivered, "the 8 jobs to be delivered", 60)
            holders = {d.worker for d in function.deliveries}
            assert holders == {"outage-worker-1", "outage-worker-2"}

            # The database goes away for more than twice dead-after, with every job running.
            cluster.stop("fast")
            await asyncio.sleep(2 * DEAD_AFTER + 1)  # the outage itself (the fault, not a wait)
            cluster.start()

            async def heard_again_for_long() -> bool:
                rows = await db_retry(
                    conninfo,
                    "SELECT count(*) FILTER (WHERE last_seen_at > pg_postmaster_start_time()),"
                    " extract(epoch FROM now() - pg_postmaster_start_time())"
                    " FROM app_jobs.workers",
                )
                seen, up = rows[0]
                # Both live workers heard from, and long enough for any rescuer to have acted.
                return bool(seen == 2 and float(up) > DEAD_AFTER + 4 * HEARTBEAT + 2)

            await _until(heard_again_for_long, "the workers to be heard from again", 60)
            locked = await db_retry(
                conninfo, "SELECT locked_by, count(*) FROM app_jobs.jobs GROUP BY locked_by"
            )
            assert {row[0] for row in locked} == holders  # nothing was taken from them
            hold.set()

            async def drained() -> bool:
                rows = await db_retry(conninfo, "SELECT count(*) FROM app_jobs.jobs")
                return bool(rows[0][0] == 0)

            await _until(drained, "the jobs to complete", 60)
            history = await db_retry(
                conninfo, "SELECT job_id, status, worker_id, attempts FROM app_jobs.job_history"
            )
        finally:
            workers.stop_all(within=30)
            workers.kill_all()
            await function.close()
        logs_seen = workers.log_events()

    per_job = Counter(d.job_id for d in function.deliveries)
    assert sorted(per_job) == sorted(job_ids)
    assert set(per_job.values()) == {1}, "a job ran twice"
    delivered_to = {d.job_id: d.worker for d in function.deliveries}
    assert sorted(history) == sorted(
        (job_id, "completed", delivered_to[job_id], 1) for job_id in job_ids
    )
    actions = Counter(entry.get("action") for entry in logs_seen)
    assert actions["job_rescued"] == 0
    assert actions["outcome_refused"] == 0
    # Both workers did see the outage (their LISTEN connection was lost).
    assert {e["file"] for e in logs_seen if e.get("action") == "listen_lost"} == {
        e["file"] for e in logs_seen
    }
    assert [code for _, code in workers.exit_codes] == [0, 0]
