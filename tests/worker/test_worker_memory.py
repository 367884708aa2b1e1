"""The worker's scheduling over the in-memory store, without a database.

Slots, prefetch, per-task limits, priorities, adoption of a lost claim, refused task
identifiers and the breaker's release path: the real :class:`~jobservice.worker.Worker` runs
real ASGI applications through :class:`~jobservice.transport.AsgiTransport` (and a refused
127.0.0.1 port through :class:`~jobservice.transport.HttpTransport`) over a
:class:`~jobservice.store_memory.MemoryStore`.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from jobservice.config import Settings
from jobservice.routing import Router
from jobservice.store_memory import MemoryStore
from jobservice.transport import Dispatch
from jobservice.worker import Worker

Message = MutableMapping[str, Any]
BOUND = 10.0
"""Longest wait for anything in these tests (seconds)."""


class GatedFunction:
    """An ASGI function that holds every request until :attr:`gate` opens, and records how
    many ran at once (overall and per task) and in which order they arrived."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.changed = asyncio.Event()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0
        self.order: list[int] = []

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        await receive()
        headers = dict(scope["headers"])
        task = headers[b"x-task-identifier"].decode()
        self.order.append(int(headers[b"x-job-id"]))
        self.running[task] += 1
        self.peak[task] = max(self.peak[task], self.running[task])
        self.peak_total = max(self.peak_total, sum(self.running.values()))
        self.changed.set()
        try:
            await self.gate.wait()
        finally:
            self.running[task] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"complete":true}'})
        self.changed.set()


async def until(condition: Callable[[], bool], what: str, changed: asyncio.Event) -> None:
    """Wait (at most :data:`BOUND` s) until ``condition()``, re-checking on each change."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not condition():
        remaining = deadline - loop.time()
        assert remaining > 0, f"timed out waiting for {what}"
        changed.clear()
        # The store changes without telling the function: re-check at least every 10 ms.
        waiter = asyncio.ensure_future(changed.wait())
        await asyncio.wait({waiter}, timeout=min(0.01, remaining))
        waiter.cancel()


def refused_url() -> str:
    """A 127.0.0.1 URL whose port refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@asynccontextmanager
async def running(
    store: MemoryStore,
    function: GatedFunction,
    *,
    in_process: tuple[str, ...] = ("t",),
    gateway_map: dict[str, str] | None = None,
    **options: Any,
) -> AsyncIterator[Worker]:
    """A worker over ``store`` running ``in_process`` tasks with ``function``."""
    settings = replace(
        Settings(),
        worker_id=store.worker_id,
        poll_interval=0.05,
        shutdown_grace=1.0,
        **{"settle_delay": 0.0, **options},
    )
    dispatch = Dispatch(
        worker_id=settings.worker_id,
        callback_url=settings.callback_url,
        concurrency=settings.concurrency,
        timeout_for=settings.timeout_for,
    )
    router = Router(
        dispatch=dispatch,
        gateway_map=gateway_map or {},
        template=None,
        base_url="http://127.0.0.1:9",
        inprocess=dict.fromkeys(in_process, ("tests:function", function)),
    )
    worker = Worker(settings, store, router)
    stop = asyncio.Event()
    run = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.ready.wait(), BOUND)
        yield worker
    finally:
        function.gate.set()
        stop.set()
        await asyncio.wait_for(run, BOUND)


def completed(store: MemoryStore, task: str) -> float:
    value: float = store.metrics.completed(task)._value.get()
    return value


async def test_the_worker_runs_at_most_concurrency_jobs_and_holds_at_most_the_prefetch() -> None:
    store = MemoryStore()
    function = GatedFunction()
    ids = [store.add("t") for _ in range(20)]
    async with running(store, function, concurrency=3, prefetch=2) as worker:
        await until(lambda: function.peak_total == 3, "three jobs running", function.changed)
        assert worker.in_flight == 5  # three running, two prefetched
        assert sum(store.status(i) == "running" for i in ids) == 5
        assert all(len(claim) <= 5 for claim in store.claims)
        function.gate.set()
        await until(
            lambda: all(store.status(i) == "completed" for i in ids), "20 jobs", function.changed
        )
    assert function.peak_total == 3
    assert completed(store, "t") == 20
    assert all(store.finished[i].attempts == 1 for i in ids)


async def test_an_idle_worker_writes_its_last_outcome_without_waiting_out_the_delay() -> None:
    # outcomes are gathered for up to JOBS_SETTLE_DELAY_MS while jobs still run; a worker with
    # nothing left running writes at once (an hour's delay here would time the test out)
    store = MemoryStore()
    function = GatedFunction()
    function.gate.set()
    job = store.add("t")
    async with running(store, function, settle_delay=3600.0):
        await until(lambda: store.status(job) == "completed", "the outcome", function.changed)


async def test_a_task_at_its_limit_waits_while_other_tasks_use_the_free_slots() -> None:
    store = MemoryStore()
    function = GatedFunction()
    slow = [store.add("slow") for _ in range(4)]
    fast = [store.add("fast") for _ in range(4)]
    async with running(
        store, function, in_process=("slow", "fast"), concurrency=5, task_concurrency={"slow": 1}
    ):
        await until(lambda: function.peak["fast"] == 4, "4 fast jobs at once", function.changed)
        assert function.running["slow"] == 1
        function.gate.set()
        await until(
            lambda: all(store.status(i) == "completed" for i in slow + fast),
            "every job",
            function.changed,
        )
    assert function.peak["slow"] == 1


async def test_jobs_run_in_priority_then_run_at_order() -> None:
    store = MemoryStore()
    function = GatedFunction()
    function.gate.set()
    low = store.add("t", priority=5)
    high = store.add("t", priority=-1)
    middle = store.add("t", priority=2)
    later = store.add("t", priority=-1, run_in=3600)
    async with running(store, function, concurrency=1, prefetch=1):
        await until(lambda: len(function.order) == 3, "three jobs", function.changed)
    assert function.order == [high, middle, low]
    assert store.status(later) == "queued"


async def test_jobs_locked_by_a_claim_whose_reply_was_lost_are_adopted_and_run_once() -> None:
    store = MemoryStore()
    function = GatedFunction()
    function.gate.set()
    store.lose_next_claim_reply()
    ids = [store.add("t") for _ in range(3)]
    async with running(store, function):
        await until(
            lambda: all(store.status(i) == "completed" for i in ids), "adoption", function.changed
        )
    assert sorted(function.order) == ids  # each ran once
    assert [store.finished[i].attempts for i in ids] == [1, 1, 1]
    assert store.claims[0] == ids  # the lost claim locked them


async def test_a_task_identifier_that_names_no_function_fails_for_good_with_why() -> None:
    store = MemoryStore()
    function = GatedFunction()
    bad = store.add("../admin", max_attempts=5)
    async with running(store, function):
        await until(lambda: store.status(bad) == "failed", "the job to fail", function.changed)
    done = store.finished[bad]
    assert done.attempts == 1  # failed for good at once: no retry
    assert done.last_error is not None
    assert "'../admin' is not allowed" in done.last_error


async def test_an_unreachable_route_releases_its_held_jobs_without_using_attempts() -> None:
    store = MemoryStore()
    function = GatedFunction()
    function.gate.set()
    down = [store.add("down", max_attempts=1) for _ in range(4)]
    up = store.add("t")
    async with running(
        store,
        function,
        gateway_map={"down": f"{refused_url()}/down"},
        concurrency=1,
        prefetch=4,
        route_backoff_min=60.0,
        route_backoff_max=60.0,
    ) as worker:
        await until(lambda: store.status(up) == "completed", "the other route", function.changed)
        await until(
            lambda: all(store.status(i) == "queued" for i in down), "released", function.changed
        )
        assert worker.breakers.open_keys()
    assert [store.jobs[i].attempts for i in down] == [0, 0, 0, 0]
    assert not store.finished.keys() & set(down)
    assert store.metrics.unreachable("down")._value.get() == 1


async def test_outcomes_the_store_refuses_make_the_worker_adopt_and_run_the_job_again() -> None:
    store = MemoryStore()
    function = GatedFunction()
    function.gate.set()
    store.refuse_next_outcomes()
    job_id = store.add("t")
    async with running(store, function):
        await until(lambda: store.status(job_id) == "completed", "adoption", function.changed)
    assert function.order == [job_id, job_id]  # run, refused, adopted, run again
    assert store.finished[job_id].attempts == 1  # adopting is not a new attempt
