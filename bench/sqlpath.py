"""``python -m bench sqlpath``: what the SQL path costs the server per job, without a worker.

One connection claims ``--batch`` jobs and completes them with the worker's own statements
(``claim_jobs`` and ``complete_jobs`` of ``jobservice/queries.sql``), each statement in its
own transaction (as the worker does), until ``--jobs`` jobs are done, on top of a backlog of
``--backlog`` queued jobs; like the worker's store, it vacuums the jobs table every
``--vacuum-every`` completed jobs. The server CPU of that connection's backend
(``/proc/<pid>/schedstat``) is split by statement and divided by the jobs; ``--explain``
prints the plans of the statements inside the functions (auto_explain, ``ANALYZE, BUFFERS``;
needs a superuser). The figures isolate the schema (indexes, triggers, function bodies) from
the worker and from the machine's other load, so they show what an index or trigger change
buys. The minimum over ``--repeat`` rounds is shown: other load on the machine only ever adds
to a round's figures.

``--sql FILE`` runs extra SQL after the migrations (to try a change before writing a
migration); ``--compare FILE`` measures a second database with ``FILE`` applied beside the
first, statement by statement in turn, so that both see the same machine load; ``--segments``
prints claim + complete for each part of the run (how the cost grows with the jobs done).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg

from bench.harness import database, execute, server
from bench.peers import BATCH, Ours
from bench.probe import backend_cpu_seconds
from jobservice.queries import queries_for
from jobservice.store_postgres import VACUUM_EVERY

WORKER_ID = "bench-sqlpath"
QUERIES = queries_for("app_jobs")
EXPLAIN = (
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_nested_statements = on",
    "SET client_min_messages = log",
)


@dataclass
class Side:
    """One database measured: its connection, backend and CPU seconds by statement."""

    conninfo: str
    conn: Any = None
    pid: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    segments: list[float] = field(default_factory=list)
    done: int = 0

    def seconds(self) -> float:
        return backend_cpu_seconds(self.pid) or 0.0

    def timed(self, name: str, query: Any, params: dict[str, Any] | None = None) -> list[Any]:
        """Run ``query``; add its backend CPU to ``cpu[name]``; its rows."""
        before = self.seconds()
        cur = self.conn.execute(query, params)
        rows = cur.fetchall() if cur.description is not None else []
        self.cpu[name] = self.cpu.get(name, 0.0) + self.seconds() - before
        return rows


def prepare(side: Side, backlog: int, jobs: int, explain: bool) -> None:
    """Connect, fill the queue (timing the enqueue) and vacuum."""
    side.conn = psycopg.connect(side.conninfo, autocommit=True)
    side.pid = int(side.conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    execute(side.conn, "clear")
    before = side.seconds()
    Ours().enqueue(side.conninfo, side.conn, backlog + jobs, BATCH)
    side.cpu["enqueue"] = side.seconds() - before
    execute(side.conn, "vacuum")
    if explain:
        for statement in EXPLAIN:
            side.conn.execute(statement)
        side.conn.add_notice_handler(lambda diag: print(diag.message_primary))


def step(side: Side, want: int, vacuum_every: int) -> None:
    """Claim up to ``want`` jobs and complete them; vacuum as the worker's store does."""
    claim = {"worker_id": WORKER_ID, "tasks": None, "job_expiry": 14400.0, "max_jobs": want}
    rows = side.timed("claim", QUERIES["claim_jobs"], claim)
    if not rows:
        raise RuntimeError("claim_jobs returned no job while jobs were queued")
    ids = "{" + ",".join(str(row[0]) for row in rows) + "}"
    complete = {"worker_id": WORKER_ID, "job_ids": ids, "results": None}
    side.timed("complete", QUERIES["complete_jobs"], complete)
    before = side.done
    side.done += len(rows)
    if vacuum_every > 0 and side.done // vacuum_every > before // vacuum_every:
        side.timed("vacuum", QUERIES["vacuum_jobs"])


def run(
    conninfos: Sequence[str],
    backlog: int,
    jobs: int,
    batch: int,
    *,
    explain: bool = False,
    vacuum_every: int = VACUUM_EVERY,
    segments: int = 1,
) -> list[dict[str, Any]]:
    """One round on each database, their statements in turn: per database
    ``{"enqueue": us/job, "claim": ..., "complete": ..., "vacuum": ..., "claim+complete": ...,
    "wall": ..., "segments": [claim+complete+vacuum us/job of each part]}``."""
    sides = [Side(conninfo) for conninfo in conninfos]
    try:
        for side in sides:
            prepare(side, backlog, jobs, explain)
        started = time.perf_counter()
        mark = max(1, jobs // max(1, segments))
        while sides[0].done < jobs:
            for side in sides:
                step(side, min(batch, jobs - side.done), vacuum_every)
                if side.done // mark > len(side.segments) or side.done >= jobs:
                    side.segments.append(sum(side.cpu.get(k, 0.0) for k in PATH))
            if explain:
                break  # one round of plans is enough
        wall = time.perf_counter() - started
    finally:
        for side in sides:
            if side.conn is not None:
                side.conn.close()
    return [figures(side, backlog + jobs, wall / len(sides)) for side in sides]


PATH = ("claim", "complete", "vacuum")


def figures(side: Side, enqueued: int, wall: float) -> dict[str, Any]:
    """A side's CPU as µs per job."""
    per = 1e6 / max(side.done, 1)
    cpu = side.cpu
    marks = [0.0, *side.segments]
    part = max(side.done, 1) / max(len(side.segments), 1)
    return {
        "enqueue": cpu.get("enqueue", 0.0) * 1e6 / enqueued,
        "claim": cpu.get("claim", 0.0) * per,
        "complete": cpu.get("complete", 0.0) * per,
        "vacuum": cpu.get("vacuum", 0.0) * per,
        "claim+complete": (cpu.get("claim", 0.0) + cpu.get("complete", 0.0)) * per,
        "wall": wall * per,
        "segments": [(b - a) * 1e6 / part for a, b in pairwise(marks)],
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
    p.add_argument(
        "--compare", type=Path, help="measure a second database with this SQL file applied"
    )
    p.add_argument(
        "--vacuum-every",
        type=int,
        default=VACUUM_EVERY,
        help=f"VACUUM jobs every so many completed jobs, as the worker does ({VACUUM_EVERY})",
    )
    p.add_argument("--segments", type=int, default=1, help="print the cost of each part")
    args = p.parse_args(argv)
    extra = [args.sql, args.compare] if args.compare is not None else [args.sql]
    with server() as (admin, where), ExitStack() as stack:
        conninfos = []
        for sql_file in extra:
            conninfo = stack.enter_context(database(admin, "bench_sqlpath"))
            if sql_file is not None:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(sql_file.read_text(encoding="utf-8").encode())
            conninfos.append(conninfo)
        rounds = [
            run(
                conninfos,
                args.backlog,
                args.jobs,
                args.batch,
                explain=args.explain,
                vacuum_every=args.vacuum_every,
                segments=args.segments,
            )
            for _ in range(1 if args.explain else max(1, args.repeat))
        ]
    names = ["with --sql" if args.sql else "as migrated"]
    if args.compare is not None:
        names.append(f"with {args.compare.name}")
    print(
        f"sqlpath on {where}: backlog {args.backlog:,}, {args.jobs:,} jobs, "
        f"{args.batch} per claim, VACUUM every {args.vacuum_every:,}; server CPU per job "
        f"(minimum of {len(rounds)} rounds){': ' + ' | '.join(names) if len(names) > 1 else ':'}"
    )
    for name in ("enqueue", "claim", "complete", "vacuum", "claim+complete", "wall"):
        label = "wall time per job" if name == "wall" else name
        values = [min(r[i][name] for r in rounds) for i in range(len(names))]
        print(f"  {label:<18} " + " | ".join(f"{v:8.1f} us" for v in values))
    if args.segments > 1:
        for i, label in enumerate(names):
            parts = " ".join(f"{v:.1f}" for v in rounds[0][i]["segments"])
            print(f"  per part of {args.jobs // args.segments:,} jobs ({label}, round 1): {parts}")
    return 0
