"""``python -m bench sqlpath``: what the SQL path costs the server per job, without a worker.

One connection claims ``--batch`` jobs with ``claim_jobs`` and completes them with
``complete_jobs``, each statement in its own transaction (as the worker does), until
``--jobs`` jobs are done, on top of a backlog of ``--backlog`` queued jobs. The server CPU of
that connection's backend (``/proc/<pid>/schedstat``) is split by statement and divided by the
jobs; ``--explain`` prints the plans of the statements inside the functions (auto_explain,
``ANALYZE, BUFFERS``; needs a superuser). The figures isolate the schema (indexes, triggers,
function bodies) from the worker and from the machine's other load, so they show what an
index or trigger change buys. The minimum over ``--repeat`` rounds is shown: other load on the
machine only ever adds to a round's figures.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from bench.harness import QUERIES, database, execute, server
from bench.peers import BATCH, Ours
from bench.probe import backend_cpu_seconds

WORKER_ID = "bench-sqlpath"


def run(conninfo: str, backlog: int, jobs: int, batch: int, explain: bool) -> dict[str, float]:
    """``{"claim": us/job, "complete": us/job, "enqueue": us/job, ...}`` on ``conninfo``."""
    ours = Ours()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        pid = int(str(conn.execute("SELECT pg_backend_pid()").fetchone()[0]))  # type: ignore[index]

        def cpu() -> float:
            return backend_cpu_seconds(pid) or 0.0

        execute(conn, "clear")
        before = cpu()
        ours.enqueue(conninfo, conn, backlog + jobs, BATCH)
        enqueue_cpu = cpu() - before
        execute(conn, "vacuum")
        if explain:
            for statement in (
                "LOAD 'auto_explain'",
                "SET auto_explain.log_min_duration = 0",
                "SET auto_explain.log_analyze = on",
                "SET auto_explain.log_buffers = on",
                "SET auto_explain.log_nested_statements = on",
                "SET client_min_messages = log",
            ):
                conn.execute(statement)
            conn.add_notice_handler(lambda diag: print(diag.message_primary))
        claim_cpu = complete_cpu = 0.0
        done = 0
        started = time.perf_counter()
        while done < jobs:
            want = min(batch, jobs - done)
            before = cpu()
            rows = conn.execute(
                QUERIES["sqlpath_claim"], {"worker_id": WORKER_ID, "max_jobs": want}
            ).fetchall()
            middle = cpu()
            ids = [int(str(row[0])) for row in rows]
            conn.execute(QUERIES["sqlpath_complete"], {"worker_id": WORKER_ID, "job_ids": ids})
            after = cpu()
            claim_cpu += middle - before
            complete_cpu += after - middle
            done += len(ids)
            if explain:
                break  # one round of plans is enough
            if not ids:
                raise RuntimeError("claim_jobs returned no job while jobs were queued")
        wall = time.perf_counter() - started
    per = 1e6 / max(done, 1)
    return {
        "enqueue": enqueue_cpu * 1e6 / (backlog + jobs),
        "claim": claim_cpu * per,
        "complete": complete_cpu * per,
        "claim+complete": (claim_cpu + complete_cpu) * per,
        "wall": wall * per,
    }


def main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m bench sqlpath``."""
    p = argparse.ArgumentParser(prog="python -m bench sqlpath", description=__doc__)
    p.add_argument("--backlog", type=int, default=100_000, help="jobs left queued (100000)")
    p.add_argument("--jobs", type=int, default=20_000, help="jobs claimed and completed")
    p.add_argument("--batch", type=int, default=100, help="jobs per claim (100)")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the minimum is shown (3)")
    p.add_argument("--explain", action="store_true", help="print the plans of one round")
    p.add_argument(
        "--sql", type=Path, help="a file of SQL run after the migrations (to try a change)"
    )
    args = p.parse_args(argv)
    with server() as (admin, where), database(admin, "bench_sqlpath") as conninfo:
        if args.sql is not None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(args.sql.read_text(encoding="utf-8").encode())
        rounds = [
            run(conninfo, args.backlog, args.jobs, args.batch, args.explain)
            for _ in range(1 if args.explain else max(1, args.repeat))
        ]
    figures = {name: min(r[name] for r in rounds) for name in rounds[0]}
    print(
        f"sqlpath on {where}: backlog {args.backlog:,}, {args.jobs:,} jobs, "
        f"{args.batch} per claim; server CPU per job (minimum of {len(rounds)} rounds):"
    )
    for name, value in figures.items():
        label = "wall time per job" if name == "wall" else name
        print(f"  {label:<18} {value:8.1f} us")
    return 0
