"""The worker as a real process: SIGTERM with jobs in flight, SIGKILL and rescue, two workers
racing over 1,000 jobs; and PostgreSQL connections terminated under a running worker."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import psycopg
from aiohttp import web

if TYPE_CHECKING:
    from tests.worker.conftest import Delivery, FunctionServer, JobsDb, Tools


class WorkerProcess:
    """``python -m jobservice.cli worker`` with its stderr (JSON logs) collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.seen = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))
            self.seen.set()

    async def wait_for_log(self, text: str, within: float = 30.0) -> None:
        async def scan() -> None:
            while not any(text in line for line in self.lines):
                self.seen.clear()
                await self.seen.wait()

        await asyncio.wait_for(scan(), within)

    async def exit_code(self, within: float = 30.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), within)
        await self._reader
        return code


@asynccontextmanager
async def worker_process(env: dict[str, str]) -> AsyncIterator[WorkerProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobservice.cli",
        "worker",
        env={**os.environ, "JOBS_LOG_LEVEL": "INFO", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    worker = WorkerProcess(proc)
    try:
        await worker.wait_for_log('"action": "worker_started"')
        yield worker
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_sigterm_finishes_in_flight_jobs_and_releases_the_rest(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    release = asyncio.Event()

    async def held(delivery: Delivery) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"complete": True})

    fn_server.handlers["held"] = held
    job_ids = await jobs_db.add_many("held", 5)
    async with worker_process(tools.env(JOBS_CONCURRENCY="3")) as worker:
        await tools.eventually(lambda: _count(fn_server, 3), what="3 jobs in flight")
        worker.proc.send_signal(signal.SIGTERM)
        await worker.wait_for_log('"action": "worker_stopping"')
        release.set()
        assert await worker.exit_code() == 0
    in_flight = {d.job_id for d in fn_server.deliveries}
    assert len(in_flight) == 3
    for job_id in job_ids:
        if job_id in in_flight:
            assert (await jobs_db.history(job_id) or {}).get("status") == "completed"
        else:
            row = await jobs_db.job(job_id)
            assert row is not None
            assert (row["locked_by"], row["attempts"]) == (None, 0)
    assert await jobs_db.count("SELECT count(*) FROM app_jobs.workers") == 0
    logged = [json.loads(line) for line in worker.lines if line.startswith("{")]
    actions = [entry["action"] for entry in logged]
    assert {"worker_started", "worker_stopping", "worker_stopped"} <= set(actions)
    assert all({"time", "level", "message"} <= set(entry) for entry in logged)


async def test_a_malformed_variable_stops_startup_with_one_line(tools: Tools) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobservice.cli",
        "worker",
        env={**os.environ, **tools.env(JOBS_TASK_CONCURRENCY='{"a": "two"}')},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert err.decode().splitlines() == [
        'jobs worker: JOBS_TASK_CONCURRENCY: expected a JSON object {"task": positive integer}'
        """ (got '{"a": "two"}')"""
    ]


async def test_a_job_of_a_killed_worker_is_rescued_and_completed(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    never = asyncio.Event()

    async def first_hangs(delivery: Delivery) -> web.StreamResponse:
        if delivery.headers["x-job-attempt"] == "1":
            await never.wait()
        return web.json_response({"complete": True})

    fn_server.handlers["fragile"] = first_hangs
    fast = {"JOBS_HEARTBEAT_INTERVAL": "0.2", "JOBS_DEAD_WORKER_AFTER": "1"}
    job_id = await jobs_db.add("fragile")
    async with worker_process(tools.env(HOSTNAME="worker-a", **fast)) as first:
        await tools.eventually(lambda: _count(fn_server, 1), what="the first delivery")
        first.proc.kill()
        assert await first.exit_code() == -signal.SIGKILL
    row = await jobs_db.job(job_id)
    assert row is not None
    assert row["locked_by"] == "worker-a"
    async with worker_process(tools.env(HOSTNAME="worker-b", **fast)):
        done = await jobs_db.finished(job_id)
    assert (done["status"], done["worker_id"], done["attempts"]) == ("completed", "worker-b", 2)
    assert [d.headers["x-worker-id"] for d in fn_server.deliveries] == ["worker-a", "worker-b"]
    never.set()


async def test_two_workers_dispatch_each_of_1000_jobs_once(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    job_ids = await jobs_db.add_many("race", 1000)
    async with (
        worker_process(tools.env(HOSTNAME="racer-1")),
        worker_process(tools.env(HOSTNAME="racer-2")),
    ):
        await tools.eventually(
            lambda: jobs_db.count("SELECT count(*) = 0 FROM app_jobs.jobs"),
            within=90,
            what="the queue to drain",
        )
    per_job = collections.Counter(d.job_id for d in fn_server.deliveries)
    assert sorted(per_job) == sorted(job_ids)
    assert set(per_job.values()) == {1}
    by_worker = collections.Counter(d.headers["x-worker-id"] for d in fn_server.deliveries)
    assert set(by_worker) <= {"racer-1", "racer-2"}
    assert (
        await jobs_db.count("SELECT count(*) FROM app_jobs.job_history WHERE status = 'completed'")
        == 1000
    )


async def test_terminated_connections_are_survived(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer, pg_admin_conninfo: str
) -> None:
    app_name = "jobs-under-test"
    terminations: list[asyncio.Task[Any]] = []

    async def terminate() -> int:
        async with await psycopg.AsyncConnection.connect(
            pg_admin_conninfo, autocommit=True
        ) as conn:
            cur = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (app_name,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def work(delivery: Delivery) -> web.StreamResponse:
        if len(fn_server.deliveries) in (40, 120, 200):
            terminations.append(asyncio.create_task(terminate()))
        await asyncio.sleep(0.002)  # the function's own work
        return web.json_response({"complete": True})

    fn_server.handlers["steady"] = work
    job_ids = await jobs_db.add_many("steady", 300)
    conninfo = psycopg.conninfo.make_conninfo(jobs_db.conninfo, application_name=app_name)
    settings = tools.settings(DATABASE_URL=conninfo, JOBS_CONCURRENCY="5")
    async with tools.running_service(settings):
        await tools.eventually(
            lambda: jobs_db.count("SELECT count(*) = 0 FROM app_jobs.jobs"),
            within=90,
            what="the queue to drain",
        )
        killed = await asyncio.gather(*terminations)
        # Still listening and working after the storm: a new job is picked up.
        late = await jobs_db.add("steady")
        assert (await jobs_db.finished(late))["status"] == "completed"
    assert len(killed) == 3
    assert all(n > 0 for n in killed)
    completed = await jobs_db.count(
        "SELECT count(*) FROM app_jobs.job_history WHERE status = 'completed' AND job_id = ANY(%s)",
        (job_ids,),
    )
    assert completed == 300


async def _count(fn_server: FunctionServer, n: int) -> bool:
    return len(fn_server.deliveries) >= n


async def test_worker_callback_server_and_scheduler_run_together(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    async with await jobs_db.connect() as conn:
        await conn.execute(
            "SELECT app_jobs.add_scheduled_job(%s::uuid, 'tick', '{\"n\": 1}'::json,"
            ' \'{"rule": "* * * * * *"}\'::json)',
            (jobs_db.DB_ID,),
        )
    env = tools.env(JOBS_SCHEDULER_ENABLED="true")
    async with worker_process(env) as worker:
        await tools.eventually(
            lambda: jobs_db.count(
                "SELECT count(*) FROM app_jobs.job_history"
                " WHERE task_identifier = 'tick' AND status = 'completed'"
            ),
            within=30,
            what="a scheduled job to run",
        )
        health = f"http://127.0.0.1:{env['INTERNAL_JOBS_CALLBACK_PORT']}/health/readiness"
        async with aiohttp.ClientSession() as http, http.get(health) as reply:
            assert reply.status == 200
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.exit_code() == 0
    assert fn_server.of("tick")
