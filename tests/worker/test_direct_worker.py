"""The worker running ``jobfn`` functions in-process without HTTP (:class:`DirectTransport`),
over the in-memory store: slots, per-task limits, results, failures and shutdown behave as
with any transport."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from jobfn import JobContext, job_function
from jobservice.config import Settings
from jobservice.direct import DirectTransport
from jobservice.routing import Router
from jobservice.store_memory import MemoryStore
from jobservice.transport import Dispatch
from jobservice.worker import Worker

BOUND = 10.0


class Gate:
    """What the gated functions share: how many run at once, and the gate they wait for."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.open = asyncio.Event()
        self.changed = asyncio.Event()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0

    async def hold(self, task: str) -> None:
        self.running[task] += 1
        self.peak[task] = max(self.peak[task], self.running[task])
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        self.changed.set()
        try:
            await self.open.wait()
        finally:
            self.running[task] -= 1
            self.changed.set()


gate = Gate()


@job_function(name="gated", signing_secret=None, callback_allowed_urls=())
async def gated(payload: dict[str, int], ctx: JobContext) -> dict[str, int]:
    await gate.hold(ctx.task or "")
    return {"n": payload["n"], "attempt": ctx.attempt or 0}


@job_function(name="crashing", signing_secret=None, callback_allowed_urls=())
async def crashing(payload: dict[str, int]) -> None:
    raise ValueError(f"bad n {payload['n']}")


async def until(condition: Any, what: str) -> None:
    async with asyncio.timeout(BOUND):
        while not condition():
            gate.changed.clear()
            waiter = asyncio.ensure_future(gate.changed.wait())
            await asyncio.wait({waiter}, timeout=0.01)  # the store changes silently too
            waiter.cancel()
    assert condition(), what


@asynccontextmanager
async def running(store: MemoryStore, **options: Any) -> AsyncIterator[Worker]:
    gate.reset()
    settings = replace(
        Settings(),
        worker_id=store.worker_id,
        poll_interval=0.05,
        settle_delay=0.0,
        shutdown_grace=0.2,
        **options,
    )
    dispatch = Dispatch(
        worker_id=settings.worker_id,
        callback_url=settings.callback_url,
        concurrency=settings.concurrency,
        timeout_for=settings.timeout_for,
    )
    inprocess = {
        "gated": ("tests:gated", gated.asgi),
        "other": ("tests:gated", gated.asgi),
        "crashing": ("tests:crashing", crashing.asgi),
    }
    router = Router(
        dispatch=dispatch,
        gateway_map={},
        template=None,
        base_url="http://127.0.0.1:9",
        inprocess=inprocess,
    )
    assert isinstance(router.route("gated"), DirectTransport)
    worker = Worker(settings, store, router)
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), BOUND)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(run, BOUND)


async def test_direct_jobs_respect_the_slots_and_complete_with_their_results() -> None:
    store = MemoryStore()
    ids = [store.add("gated", {"n": n}) for n in range(12)]
    async with running(store, concurrency=3, prefetch=2) as worker:
        await until(lambda: gate.peak_total == 3, "three jobs running")
        assert worker.in_flight == 5  # three running, two prefetched
        gate.open.set()
        await until(lambda: all(store.status(i) == "completed" for i in ids), "every job")
    assert gate.peak_total == 3
    results = [json.loads(store.finished[i].result or "null") for i in ids]
    assert results == [{"n": n, "attempt": 1} for n in range(12)]


async def test_a_task_at_its_limit_waits_while_direct_jobs_of_others_run() -> None:
    store = MemoryStore()
    limited = [store.add("gated", {"n": 1}) for _ in range(3)]
    others = [store.add("other", {"n": 2}) for _ in range(3)]
    async with running(store, concurrency=4, task_concurrency={"gated": 1}):
        await until(lambda: gate.peak["other"] == 3, "3 others at once")
        assert gate.running["gated"] == 1
        gate.open.set()
        await until(
            lambda: all(store.status(i) == "completed" for i in limited + others), "every job"
        )
    assert gate.peak["gated"] == 1


async def test_a_crashing_direct_job_is_retried_with_its_message() -> None:
    store = MemoryStore()
    job_id = store.add("crashing", {"n": 7})
    async with running(store):
        await until(lambda: store.jobs[job_id].last_error is not None, "the failed attempt")
    assert store.jobs[job_id].last_error == "HTTP 500 Internal Server Error: bad n 7"
    assert store.status(job_id) == "queued"


async def test_direct_jobs_still_running_after_the_grace_are_released_not_failed() -> None:
    store = MemoryStore()
    ids = [store.add("gated", {"n": n}) for n in range(2)]
    async with running(store, concurrency=2):
        await until(lambda: gate.peak_total == 2, "both running")
    assert [store.status(i) for i in ids] == ["queued", "queued"]
    assert not store.finished
    assert all(store.jobs[i].last_error is None for i in ids)
