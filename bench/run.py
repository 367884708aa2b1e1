"""``python -m bench``: throughput, enqueue rate, latency and memory of the job service.

``python -m bench compare`` measures our worker beside graphile-worker and pgqueuer in one run
(:mod:`bench.compare`). Every figure comes from real processes on this machine: a fresh
database (``DATABASE_URL`` / ``PG*``, else the embedded PostgreSQL), a ``jobs worker``
subprocess, and for HTTP dispatch a ``jobfn serve`` subprocess. Drain rates are measured by
the database's clock, from the first claim (``min(started_at)``) to the last completion
(``max(finished_at)``) in ``job_history``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.harness import ROOT, execute, fresh_database, function_server, scalar, worker
from jobfn.client import add_job, add_jobs

DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
ENQUEUE_BATCH = 1000
WAIT_LIMIT_S = 600.0

Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True)
class Drain:
    """One drain setting: dispatch mode and worker configuration."""

    label: str
    http: bool
    concurrency: int
    extra: dict[str, str] = field(default_factory=dict)


DRAINS = (
    Drain("in-process, concurrency 10", http=False, concurrency=10),
    Drain("in-process, concurrency 100", http=False, concurrency=100),
    Drain("HTTP, concurrency 10", http=True, concurrency=10),
    Drain("HTTP, concurrency 50", http=True, concurrency=50),
)


@dataclass
class Results:
    """Figures of one run."""

    drains: dict[str, float] = field(default_factory=dict)
    enqueue_batched: float = 0.0
    enqueue_single: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    peak_mb: float = 0.0


def _jobs(task: str, n: int) -> list[dict[str, object]]:
    return [{"task": task, "payload": {}, "database_id": DATABASE_ID} for _ in range(n)]


def enqueue_batched(conn: Conn, n: int) -> float:
    """Jobs/s enqueuing ``n`` no-op jobs with ``add_jobs``, :data:`ENQUEUE_BATCH` per call."""
    started = time.perf_counter()
    for first in range(0, n, ENQUEUE_BATCH):
        add_jobs(_jobs("noop", min(ENQUEUE_BATCH, n - first)), conn=conn)
    return n / (time.perf_counter() - started)


def enqueue_single(conn: Conn, n: int) -> float:
    """Jobs/s enqueuing ``n`` jobs with ``add_job``, one transaction each."""
    started = time.perf_counter()
    for _ in range(n):
        add_job("noop", {}, conn=conn, database_id=DATABASE_ID)
    return n / (time.perf_counter() - started)


def _wait_for_history(conn: Conn, n: int) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while int(str(scalar(conn, "history_count"))) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} jobs were not done within {WAIT_LIMIT_S} s")
        time.sleep(0.05)


def drain(conninfo: str, conn: Conn, setting: Drain, n: int) -> tuple[float, float]:
    """``(jobs/s, worker peak MB)`` draining ``n`` queued no-op jobs with ``setting``."""
    execute(conn, "clear")
    enqueue_batched(conn, n)
    env = {"PYTHONPATH": str(ROOT), **setting.extra}
    if setting.http:
        with (
            function_server("bench.noop:noop") as url,
            worker(
                conninfo, concurrency=setting.concurrency, routes={"noop": url}, extra=env
            ) as process,
        ):
            _wait_for_history(conn, n)
            peak = process.peak_memory_mb()
    else:
        inprocess = {"noop": "bench.noop:noop"}
        with worker(
            conninfo, concurrency=setting.concurrency, inprocess=inprocess, extra=env
        ) as process:
            _wait_for_history(conn, n)
            peak = process.peak_memory_mb()
    seconds = float(str(scalar(conn, "drain_seconds")))
    return n / seconds, peak


def latency(conninfo: str, conn: Conn, n: int, stamp_file: Path) -> list[float]:
    """Milliseconds from the ``add_job`` call to the handler's start, ``n`` jobs one by one."""
    execute(conn, "clear")
    stamp_file.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .cache/
    stamp_file.write_text("")
    env = {"PYTHONPATH": str(ROOT), "BENCH_STAMP_FILE": str(stamp_file)}
    samples: list[float] = []
    with worker(conninfo, concurrency=10, inprocess={"stamp": "bench.noop:stamp"}, extra=env):
        warm_up = 20
        for index in range(warm_up + n):
            before = time.time_ns()
            add_job("stamp", {}, conn=conn, database_id=DATABASE_ID)
            started_ns = _wait_for_stamp(stamp_file, index + 1)
            _wait_for_history(conn, index + 1)  # the worker is idle again before the next one
            if index >= warm_up:
                samples.append((started_ns - before) / 1e6)
    return samples


def _wait_for_stamp(stamp_file: Path, count: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        lines = stamp_file.read_text().splitlines()
        if len(lines) >= count:
            return int(lines[count - 1].split()[1])
        if time.monotonic() > deadline:
            raise RuntimeError("the latency job did not start within 30 s")
        time.sleep(0.0005)


def run_once(args: argparse.Namespace) -> tuple[Results, str]:
    """One complete run of every measurement."""
    results = Results()
    with fresh_database() as (conninfo, where), psycopg.connect(conninfo, autocommit=True) as conn:
        for setting in DRAINS:
            rate, peak = drain(conninfo, conn, setting, args.jobs)
            results.drains[setting.label] = rate
            results.peak_mb = max(results.peak_mb, peak)
            print(f"  drain {setting.label}: {rate:,.0f} jobs/s (peak {peak:.0f} MB)", flush=True)
        execute(conn, "clear")
        results.enqueue_batched = enqueue_batched(conn, args.jobs)
        execute(conn, "clear")
        results.enqueue_single = enqueue_single(conn, args.single)
        print(
            f"  enqueue: batched {results.enqueue_batched:,.0f} jobs/s, "
            f"one at a time {results.enqueue_single:,.0f} jobs/s",
            flush=True,
        )
        stamp_file = ROOT / ".cache" / "bench-stamps.txt"
        results.latency_ms = latency(conninfo, conn, args.latency_jobs, stamp_file)
        stamp_file.unlink(missing_ok=True)
    return results, where


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(runs: list[Results], args: argparse.Namespace, where: str) -> str:
    """The figures (medians over ``runs``) beside the targets and the peers."""
    best_inproc = _median([max(v for k, v in r.drains.items() if "in-process" in k) for r in runs])
    best_http = _median([max(v for k, v in r.drains.items() if "HTTP" in k) for r in runs])
    p50 = _median([_percentile(r.latency_ms, 0.50) for r in runs])
    p99 = _median([_percentile(r.latency_ms, 0.99) for r in runs])
    rows = [
        ("figure", "ours", "target", "best peer (perf-notes)"),
        *[
            (f"drain {label}", f"{_median([r.drains[label] for r in runs]):,.0f} jobs/s", "", "")
            for label in runs[0].drains
        ],
        ("drain in-process, best", f"{best_inproc:,.0f} jobs/s", ">= 15,000", "18,352 graphile"),
        ("drain HTTP, best", f"{best_http:,.0f} jobs/s", ">= 3,000", "~325 reference"),
        (
            f"enqueue batched ({ENQUEUE_BATCH}/call)",
            f"{_median([r.enqueue_batched for r in runs]):,.0f} jobs/s",
            ">= 30,000",
            "~38,000",
        ),
        (
            "enqueue one at a time",
            f"{_median([r.enqueue_single for r in runs]):,.0f} jobs/s",
            "",
            "800-2,000",
        ),
        ("latency add_job -> start p50", f"{p50:.2f} ms", "< 3 ms", "2.95 ms graphile"),
        ("latency add_job -> start p99", f"{p99:.2f} ms", "< 10 ms", "6.84 ms graphile"),
        (
            "worker peak memory (VmHWM)",
            f"{max(r.peak_mb for r in runs):.0f} MB",
            "< 150 MB",
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        f"jobs: {args.jobs:,} per drain, {args.single:,} enqueued one at a time, "
        f"{args.latency_jobs} latency samples; runs: {len(runs)} (medians)",
        f"machine: {os.cpu_count()} cores, {_cpu_model()}, Python {platform.python_version()}, "
        f"{where}",
    ]
    for index, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench`` (``python -m bench compare ...``: the comparison)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["compare"]:
        from bench.compare import main as compare

        return compare(args_list[1:])
    if args_list[:1] == ["sqlpath"]:
        from bench.sqlpath import main as sqlpath

        return sqlpath(args_list[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per drain and batch enqueue")
    parser.add_argument("--single", type=int, default=2_000, help="jobs enqueued one at a time")
    parser.add_argument("--latency-jobs", type=int, default=200, help="latency samples")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    args = parser.parse_args(args_list)
    runs: list[Results] = []
    where = ""
    for number in range(1, args.runs + 1):
        print(f"run {number}/{args.runs}", flush=True)
        results, where = run_once(args)
        runs.append(results)
    print(report(runs, args, where))
    return 0
