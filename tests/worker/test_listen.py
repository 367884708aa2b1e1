"""Wake-ups: LISTEN "jobs:insert" picks up a new job at once even with a long poll interval;
a LISTEN connection that receives nothing is noticed (and the worker keeps polling);
per-task concurrency limits hold."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from devstack.database import create_database, drop_database
from jobservice.listener import Listener
from jobservice.queries import queries_for

if TYPE_CHECKING:
    from tests.worker.conftest import Delivery, FunctionServer, JobsDb, Tools


async def test_a_job_added_while_idle_is_picked_up_by_notification(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    settings = tools.settings(JOBS_POLL_INTERVAL="3600")
    async with tools.running_service(settings) as service:
        assert service.worker is not None
        listener = service.worker.listener
        assert listener is not None
        await asyncio.wait_for(listener.listening.wait(), 20)
        # The worker has polled once and is now idle for an hour unless woken up.
        fn_server.arrived.clear()
        job_id = await jobs_db.add("wake-me")
        await asyncio.wait_for(fn_server.arrived.wait(), 20)
        assert fn_server.deliveries[-1].job_id == job_id
        assert (await jobs_db.finished(job_id))["status"] == "completed"


async def test_notifications_that_never_arrive_are_noticed(
    db_conninfo: str, pg_admin_conninfo: str
) -> None:
    # The probe goes through the pool's database; the LISTEN connection is elsewhere, so the
    # probe never comes back, as behind a transaction-pooling proxy.
    other = create_database(pg_admin_conninfo, "jobs_listen_elsewhere_" + str(id(db_conninfo)))
    health: asyncio.Queue[bool] = asyncio.Queue()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        db_conninfo, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False
    )
    await pool.open()
    queries = queries_for("app_jobs")

    async def send_probe(token: str) -> None:
        async with pool.connection() as conn:
            await conn.execute(queries.notify_probe, {"token": token})

    def listener(conninfo: str) -> Listener:
        return Listener(
            conninfo,
            queries,
            worker_id="probe-worker",
            on_wake=lambda: None,
            send_probe=send_probe,
            poll_interval=1.0,
            probe_interval=0.2,
            probe_timeout=0.5,
            on_health=health.put_nowait,
        )

    try:
        lost = asyncio.create_task(listener(other).run())
        assert await asyncio.wait_for(health.get(), 20) is False
        lost.cancel()
        fine = asyncio.create_task(listener(db_conninfo).run())
        assert await asyncio.wait_for(health.get(), 20) is True
        fine.cancel()
        await asyncio.gather(lost, fine, return_exceptions=True)
    finally:
        await pool.close()
        drop_database(pg_admin_conninfo, str(conninfo_to_dict(other)["dbname"]))


async def test_per_task_concurrency_limit(
    tools: Tools, jobs_db: JobsDb, fn_server: FunctionServer
) -> None:
    running = {"limited": 0, "free": 0}
    peak = {"limited": 0, "free": 0}

    def counting(task: str) -> Any:
        async def handler(delivery: Delivery) -> web.StreamResponse:
            running[task] += 1
            peak[task] = max(peak[task], running[task])
            await asyncio.sleep(0.01)  # the function's own work
            running[task] -= 1
            return web.json_response({"complete": True})

        return handler

    fn_server.handlers["limited"] = counting("limited")
    fn_server.handlers["free"] = counting("free")
    settings = tools.settings(
        JOBS_CONCURRENCY="8", JOBS_TASK_CONCURRENCY=json.dumps({"limited": 2})
    )
    limited = await jobs_db.add_many("limited", 40)
    free = await jobs_db.add_many("free", 40)
    async with tools.running_service(settings):
        for job_id in limited + free:
            assert (await jobs_db.finished(job_id))["status"] == "completed"
    assert peak["limited"] == 2
    assert 2 < peak["free"] <= 8
