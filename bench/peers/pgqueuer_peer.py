"""pgqueuer as a benchmark peer: ``python -m bench.peers.pgqueuer_peer install|worker``.

Environment: ``DATABASE_URL``; ``BENCH_CONCURRENCY`` (the worker's dequeue batch);
``BENCH_STAMP_FILE`` (the ``stamp`` entrypoint appends the wall-clock nanoseconds at which it
started). The enqueue side (:func:`enqueue`) is called from the benchmark process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import timedelta

import psycopg
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job


async def _connect() -> psycopg.AsyncConnection[tuple[object, ...]]:
    return await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True)


async def install(conninfo: str) -> None:
    """Create pgqueuer's tables in ``conninfo``'s database."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()


async def connect(conninfo: str) -> tuple[psycopg.AsyncConnection[tuple[object, ...]], Queries]:
    """A new autocommit connection (the caller closes it) and pgqueuer's queries over it."""
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    return conn, Queries(PsycopgDriver(conn))


async def enqueue(conninfo: str, n: int, batch: int) -> float:
    """Jobs/s enqueuing ``n`` no-op jobs, ``batch`` per call (1: one call per job)."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        queries = Queries(PsycopgDriver(conn))
        started = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                await queries.enqueue("noop", None)
        else:
            for first in range(0, n, batch):
                size = min(batch, n - first)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        return n / (time.perf_counter() - started)


async def work() -> None:
    """Run noop and stamp jobs until SIGTERM."""
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "10"))
    conn = await _connect()
    manager = QueueManager(Queries(PsycopgDriver(conn)))

    @manager.entrypoint("noop")
    async def noop(job: Job) -> None:
        """Do nothing."""

    @manager.entrypoint("stamp")
    async def stamp(job: Job) -> None:
        """Append the start time (ns)."""
        started = time.time_ns()
        with open(os.environ["BENCH_STAMP_FILE"], "a", encoding="ascii") as out:  # noqa: ASYNC230
            out.write(f"{started}\n")

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, manager.shutdown.set)
    print("BENCH_READY", flush=True)
    await manager.run(dequeue_timeout=timedelta(seconds=2), batch_size=concurrency)
    await conn.close()


def main() -> int:
    """Entry point."""
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "install":
        asyncio.run(install(os.environ["DATABASE_URL"]))
        return 0
    if mode == "worker":
        asyncio.run(work())
        return 0
    print(f"usage: python -m bench.peers.pgqueuer_peer install|worker (got {mode!r})")
    return 2


if __name__ == "__main__":
    sys.exit(main())
