"""The queues the comparison measures, behind one interface (:class:`Peer`).

- ``ours``: ``jobs worker`` running the no-op function in-process (``JOBS_INPROCESS``);
- ``ours-http``: ``jobs worker`` POSTing each job to a ``jobfn serve`` process (uvicorn);
- ``graphile``: graphile-worker 0.18 (Node), installed by :mod:`bench.peers.npm`;
- ``pgqueuer``: pgqueuer (Python, from this project's virtual environment).

Each peer gets a database of its own; the benchmark enqueues no-op jobs through the peer's
own batch and single-job calls and counts its pending rows with :attr:`Peer.pending`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bench.harness import (
    QUERIES,
    ROOT,
    Launch,
    Process,
    execute,
    function_process,
    started_all,
    worker_launch,
)
from bench.peers import npm
from bench.peers.pgqueuer_peer import connect as pgqueuer_connect
from bench.peers.pgqueuer_peer import enqueue as pgqueuer_enqueue
from bench.peers.pgqueuer_peer import install as pgqueuer_install
from jobfn.client import add_job, add_jobs

Conn = psycopg.Connection[tuple[object, ...]]
DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
BATCH = 1000
"""Jobs per batched enqueue call, for every peer."""


def _specs(task: str, n: int) -> list[dict[str, object]]:
    return [{"identifier": task, "payload": {}} for _ in range(n)]


def url(conninfo: str) -> str:
    """``conninfo`` (keywords or URL) as a ``postgresql://`` URL, for Node's ``pg``."""
    params = conninfo_to_dict(conninfo)
    user = quote(str(params.pop("user", "")), safe="")
    password = quote(str(params.pop("password", "")), safe="")
    host = str(params.pop("host", "localhost"))
    port = str(params.pop("port", "5432"))
    dbname = quote(str(params.pop("dbname", "")), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    if host.startswith("/"):  # a Unix socket directory
        params["host"] = host
        host = ""
    location = f"{host}:{port}" if host else ""
    query = ("?" + urlencode({k: str(v) for k, v in params.items()})) if params else ""
    if not host:
        query = (query + "&" if query else "?") + f"port={port}"
    return f"postgresql://{auth}{location}/{dbname}{query}"


class Peer:
    """One queue under test (subclasses below)."""

    name = ""
    pending = ""
    """Name of the query (in ``bench/queries.sql``) counting this queue's pending rows."""
    clear_query = ""
    concurrency = 10
    uses_app_jobs = False
    wakes_on_notify = True
    """False: new jobs wait for the worker's next poll (latency is then sampled briefly)."""
    enqueues_on_conn = True
    """:meth:`enqueue` runs on the connection it is given (False: on one of its own)."""

    def setup(self, conninfo: str) -> None:
        """Install the queue's schema into the (empty) database ``conninfo``."""

    def function_pids(self) -> list[int]:
        """The processes that run the jobs' function apart from the workers (HTTP dispatch),
        while :meth:`workers` runs; none for a queue whose workers run the function."""
        return []

    def clear(self, conn: Conn) -> None:
        """Remove every job."""
        execute(conn, self.clear_query)

    def enqueue(self, conninfo: str, conn: Conn, n: int, batch: int) -> float:
        """Jobs/s enqueuing ``n`` no-op jobs, ``batch`` per call (1: one call per job), through
        the queue's own SQL functions when it has them (the rows counted in the server)."""
        raise NotImplementedError

    def enqueue_client(self, conninfo: str, conn: Conn, n: int, batch: int) -> float | None:
        """As :meth:`enqueue`, through the queue's client library when it is not what
        :meth:`enqueue` measures already (``None``: nothing more to measure)."""
        return None

    def workers(
        self, conninfo: str, count: int, stamp_file: Path | None = None
    ) -> AbstractContextManager[list[Process]]:
        """``count`` worker processes at :attr:`concurrency` each, running until the end."""
        raise NotImplementedError

    @contextmanager
    def adder(self, conninfo: str, conn: Conn) -> Iterator[Callable[[str], None]]:
        """A function enqueuing one job of a task, in a transaction of its own."""
        yield lambda task: self.add_one(conn, task)

    def add_one(self, conn: Conn, task: str) -> None:
        """Enqueue one job of ``task`` (see :meth:`adder`)."""
        raise NotImplementedError


class Ours(Peer):
    """Our ``jobs worker``, in-process dispatch."""

    name = "ours"
    pending = "ours_pending"
    clear_query = "clear"
    uses_app_jobs = True

    def add_one(self, conn: Conn, task: str) -> None:
        add_job(task, {}, conn=conn, database_id=DATABASE_ID)

    def enqueue(self, conninfo: str, conn: Conn, n: int, batch: int) -> float:
        started_at = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                conn.execute(QUERIES["ours_add_job"], {"db_id": DATABASE_ID, "task": "noop"})
        else:
            for first in range(0, n, batch):
                specs = [
                    {"identifier": "noop", "payload": {}, "db_id": DATABASE_ID}
                    for _ in range(min(batch, n - first))
                ]
                conn.execute(QUERIES["ours_add_jobs"], {"jobs": json.dumps(specs)})
        return n / (time.perf_counter() - started_at)

    def enqueue_client(self, conninfo: str, conn: Conn, n: int, batch: int) -> float | None:
        """Through ``jobfn.client`` (``add_jobs`` / ``add_job``), which returns every job as a
        :class:`jobfn.client.Job`."""
        started_at = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                self.add_one(conn, "noop")
        else:
            for first in range(0, n, batch):
                size = min(batch, n - first)
                jobs = [{"task": "noop", "payload": {}, "database_id": DATABASE_ID}] * size
                add_jobs(jobs, conn=conn)
        return n / (time.perf_counter() - started_at)

    @contextmanager
    def workers(
        self, conninfo: str, count: int, stamp_file: Path | None = None
    ) -> Iterator[list[Process]]:
        env = {"PYTHONPATH": str(ROOT)}
        if stamp_file is not None:
            env["BENCH_STAMP_FILE"] = str(stamp_file)
        inprocess = {"noop": "bench.noop:noop", "stamp": "bench.noop:stamp"}
        launches = [
            worker_launch(conninfo, concurrency=self.concurrency, inprocess=inprocess, extra=env)
            for _ in range(count)
        ]
        with started_all(launches) as started_workers:
            yield started_workers


class OursHttp(Ours):
    """Our ``jobs worker`` POSTing every job to a ``jobfn serve`` function (uvicorn)."""

    name = "ours-http"
    concurrency = 50

    def __init__(self) -> None:
        self._functions: list[Process] = []

    def function_pids(self) -> list[int]:
        return [process.popen.pid for process in self._functions]

    @contextmanager
    def workers(
        self, conninfo: str, count: int, stamp_file: Path | None = None
    ) -> Iterator[list[Process]]:
        env = {"PYTHONPATH": str(ROOT)}
        if stamp_file is not None:
            env["BENCH_STAMP_FILE"] = str(stamp_file)
        with (
            function_process("bench.noop:noop", env) as (noop_url, noop_process),
            function_process("bench.noop:stamp", env) as (stamp_url, _stamp_process),
            started_all(
                [
                    worker_launch(
                        conninfo,
                        concurrency=self.concurrency,
                        routes={"noop": noop_url, "stamp": stamp_url},
                        extra=env,
                    )
                    for _ in range(count)
                ]
            ) as started_workers,
        ):
            self._functions = [noop_process]  # the drains' jobs all go to the no-op function
            try:
                yield started_workers
            finally:
                self._functions = []


class Graphile(Peer):
    """graphile-worker (Node), ``localQueue`` 200, ``completeJobBatchDelay`` 0."""

    name = "graphile"
    pending = "graphile_pending"
    clear_query = "graphile_clear"

    def setup(self, conninfo: str) -> None:
        install = npm.install_graphile()
        done = subprocess.run(
            [str(install.node), str(install.script), "migrate"],
            env={**os.environ, "DATABASE_URL": url(conninfo)},
            cwd=install.folder,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"graphile-worker's migration failed: {done.stderr[-2000:]}")

    def _launch(self, conninfo: str, env: dict[str, str]) -> Launch:
        install = npm.install_graphile()
        return Launch(
            [str(install.node), str(install.script), "worker"],
            {"DATABASE_URL": url(conninfo), **env},
            cwd=install.folder,
        )

    def add_one(self, conn: Conn, task: str) -> None:
        conn.execute(QUERIES["graphile_add_job"], {"task": task})

    def enqueue(self, conninfo: str, conn: Conn, n: int, batch: int) -> float:
        started_at = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                self.add_one(conn, "noop")
        else:
            for first in range(0, n, batch):
                specs = json.dumps(_specs("noop", min(batch, n - first)))
                conn.execute(QUERIES["graphile_add_jobs"], {"jobs": specs})
        return n / (time.perf_counter() - started_at)

    def workers(
        self, conninfo: str, count: int, stamp_file: Path | None = None
    ) -> AbstractContextManager[list[Process]]:
        env = {"BENCH_CONCURRENCY": str(self.concurrency)}
        if stamp_file is not None:
            env["BENCH_STAMP_FILE"] = str(stamp_file)
        return started_all([self._launch(conninfo, env) for _ in range(count)])


class PgQueuer(Peer):
    """pgqueuer, dequeue batch = concurrency."""

    name = "pgqueuer"
    pending = "pgqueuer_pending"
    clear_query = "pgqueuer_clear"
    wakes_on_notify = False  # with the psycopg driver it picks new jobs up on its 2 s poll
    enqueues_on_conn = False

    def setup(self, conninfo: str) -> None:
        asyncio.run(pgqueuer_install(conninfo))

    def enqueue(self, conninfo: str, conn: Conn, n: int, batch: int) -> float:
        return asyncio.run(pgqueuer_enqueue(conninfo, n, batch))

    @contextmanager
    def adder(self, conninfo: str, conn: Conn) -> Iterator[Callable[[str], None]]:
        with asyncio.Runner() as runner:
            connection, queries = runner.run(pgqueuer_connect(conninfo))

            def add(task: str) -> None:
                runner.run(queries.enqueue(task, None))

            try:
                yield add
            finally:
                runner.run(connection.close())

    def workers(
        self, conninfo: str, count: int, stamp_file: Path | None = None
    ) -> AbstractContextManager[list[Process]]:
        env = {
            "DATABASE_URL": conninfo,
            "BENCH_CONCURRENCY": str(self.concurrency),
            "PYTHONPATH": str(ROOT),
        }
        if stamp_file is not None:
            env["BENCH_STAMP_FILE"] = str(stamp_file)
        argv = [sys.executable, "-m", "bench.peers.pgqueuer_peer", "worker"]
        return started_all([Launch(argv, env, cwd=ROOT) for _ in range(count)])


PEERS: dict[str, type[Peer]] = {peer.name: peer for peer in (Ours, OursHttp, Graphile, PgQueuer)}
