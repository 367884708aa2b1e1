"""``python -m bench compare``: our worker beside its peers, in one run, with one method.

Every peer (see :mod:`bench.peers`) gets a database of its own on the same server; each
scenario is run for every peer in turn before the next scenario (the machine's load drifts:
this way it weighs on every peer alike):

- **drain**: ``N`` no-op jobs enqueued (batched), ``VACUUM (ANALYZE)``, then the workers are
  started while an outside poller counts the pending rows (every 20 ms, or ten times the count's
  own duration when that is longer); rate = 80 % of the jobs over the time from 90 % left to
  10 % left (with several processes: from when the last one is ready, if that is later, so
  each rate is measured with all of them running). The same window gives the PostgreSQL CPU
  per job (the database's server processes), the workers' CPU per job and, for HTTP dispatch,
  the function server's CPU per job; peak memory is the largest worker ``VmHWM``. With
  several drain sizes, the rate at the largest over the rate at the smallest shows how a
  queue holds up as the backlog grows.
- **processes**: the same drain with 1, 2, 4 worker processes;
- **enqueue**: jobs/s through the peer's batch call (1,000 jobs per call) and one job per
  transaction: the queue's SQL functions where it has them (ours, graphile-worker: the same
  JSON array in, the rows counted in the server), pgqueuer's Python ``Queries``; ours also
  through ``jobfn.client``, which returns every job to the caller. The peers alternate over
  ``--enqueue-rounds`` rounds and the best round counts; the server CPU per job is that of the
  backend the enqueue ran on (``/proc/<pid>/schedstat``);
- **latency**: enqueue one job, wait until its handler has started and the queue is empty
  again, repeat; p50/p99 of "just before the enqueue call" → "handler's first line"
  (wall clock in both processes).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.harness import QUERIES, ROOT, database, execute, server
from bench.measure import drain_window, percentile, rate_ratio
from bench.peers import BATCH, PEERS, Conn, Peer
from bench.probe import Poller, backend_cpu_seconds

WARM_UP = 20
LARGE = 100_000
"""Drains larger than this run only for ``--large-peers`` (the slow peers would take hours)."""
SLOW_SAMPLES = 20
"""Latency samples for a peer that waits for its poll interval instead of a notification."""


@dataclass(frozen=True)
class DrainFigure:
    """One drain of one peer."""

    rate: float
    server_us: float
    worker_us: float
    peak_mb: float
    function_us: float | None = None
    """CPU per job of the function processes (``None``: the workers run the function)."""


@dataclass(frozen=True)
class EnqueueFigure:
    """One way of enqueueing, for one peer: the best of the rounds."""

    rate: float
    server_us: float | None
    """CPU per job of the server process the enqueue ran on (``None``: not on ours)."""


ENQUEUE_WAYS = ("batched", "single", "client batched", "client single")
"""Batched (:data:`BATCH` per call) or one per transaction; the queue's SQL call or its client
library (:meth:`Peer.enqueue_client`)."""


@dataclass
class PeerFigures:
    """Everything measured for one peer."""

    drains: dict[tuple[int, int], DrainFigure] = field(default_factory=dict)
    """By ``(jobs queued, worker processes)``."""
    enqueue: dict[str, EnqueueFigure] = field(default_factory=dict)
    """By way (:data:`ENQUEUE_WAYS`): the best of the rounds."""
    latency_ms: list[float] = field(default_factory=list)


def _wait_limit(n: int) -> float:
    return 120.0 + n / 500


def drain(peer: Peer, conninfo: str, conn: Conn, n: int, count: int) -> DrainFigure:
    """Drain ``n`` queued no-op jobs with ``count`` worker processes of ``peer``."""
    peer.clear(conn)
    peer.enqueue(conninfo, conn, n, BATCH)
    execute(conn, "vacuum")
    pids: list[int] = []
    poller = Poller(
        conninfo, QUERIES[peer.pending], QUERIES["backend_pids"], lambda: pids, peer.function_pids
    )
    with poller, peer.workers(conninfo, count) as workers:
        ready = time.monotonic()
        pids.extend(process.popen.pid for process in workers)
        poller.wait_empty(_wait_limit(n))
        peak = max(process.peak_memory_mb() for process in workers)
        functions = bool(peer.function_pids())
    window = drain_window(poller.samples, n, not_before=ready if count > 1 else None)
    return DrainFigure(
        window.rate,
        window.server_us_per_job,
        window.worker_us_per_job,
        peak,
        window.function_us_per_job if functions else None,
    )


def latency(
    peer: Peer, conninfo: str, conn: Conn, n: int, stamp_file: Path, *, warm_up: int = WARM_UP
) -> list[float]:
    """``n`` samples (after ``warm_up`` more) of enqueue → handler start, in milliseconds."""
    peer.clear(conn)
    stamp_file.parent.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text("")
    samples: list[float] = []
    pending = QUERIES[peer.pending]
    with peer.workers(conninfo, 1, stamp_file), peer.adder(conninfo, conn) as add:
        for index in range(warm_up + n):
            before = time.time_ns()
            add("stamp")
            started_ns = _wait_for_stamp(stamp_file, index + 1)
            _wait_until(lambda: _count(conn, pending) == 0, "the queue to be empty")
            if index >= warm_up:
                samples.append((started_ns - before) / 1e6)
    stamp_file.unlink(missing_ok=True)
    return samples


def _count(conn: Conn, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    return 0 if row is None else int(str(row[0]))


def _wait_until(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(0.001)


def _wait_for_stamp(stamp_file: Path, count: int) -> int:
    found: list[int] = []

    def stamped() -> bool:
        lines = stamp_file.read_text().splitlines()
        if len(lines) < count:
            return False
        found.append(int(lines[count - 1].split()[-1]))
        return True

    _wait_until(stamped, "the latency job to start")
    return found[0]


@dataclass
class Subject:
    """One peer under test, with its database and a connection to it."""

    peer: Peer
    conninfo: str
    conn: Conn
    figures: PeerFigures = field(default_factory=PeerFigures)

    def say(self, text: str) -> None:
        """Print one measured figure as it comes."""
        print(f"  [{time.strftime('%H:%M:%S')}] {self.peer.name}: {text}", flush=True)


def enqueue_round(s: Subject, args: argparse.Namespace) -> None:
    """One round of every way of enqueueing for ``s``'s peer; keeps the best of the rounds (the
    machine's other load only ever slows a round down)."""
    for way in ENQUEUE_WAYS:
        n, batch = (args.enqueue, BATCH) if way.endswith("batched") else (args.single, 1)
        s.peer.clear(s.conn)
        pid = s.conn.info.backend_pid
        before = backend_cpu_seconds(pid)
        if way.startswith("client"):
            rate = s.peer.enqueue_client(s.conninfo, s.conn, n, batch)
        else:
            rate = s.peer.enqueue(s.conninfo, s.conn, n, batch)
        after = backend_cpu_seconds(pid)
        s.peer.clear(s.conn)
        if rate is None:
            continue
        server = None
        if s.peer.enqueues_on_conn and before is not None and after is not None:
            server = (after - before) * 1e6 / n
        best = s.figures.enqueue.get(way)
        s.figures.enqueue[way] = EnqueueFigure(
            max(rate, best.rate) if best else rate,
            _least(server, best.server_us if best else None),
        )


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def drains_to_run(args: argparse.Namespace) -> list[tuple[int, int]]:
    """``(jobs queued, worker processes)`` of every drain, in order."""
    runs = [(n, 1) for n in args.sizes]
    runs += [
        (args.process_jobs, count)
        for count in args.processes
        if (args.process_jobs, count) not in runs
    ]
    return runs


def measure(subjects: Sequence[Subject], args: argparse.Namespace) -> None:
    """Every scenario, each one for every peer in turn (so that the machine's load, which
    drifts, weighs on all of them alike)."""
    for n, count in drains_to_run(args):
        for s in subjects:
            if n > args.large_above and s.peer.name not in args.large_peers:
                continue
            try:
                got = drain(s.peer, s.conninfo, s.conn, n, count)
            except (RuntimeError, ValueError) as exc:  # one failed drain keeps the others
                s.say(f"drain {n:,} x{count} FAILED: {exc}")
                continue
            s.figures.drains[n, count] = got
            function = "" if got.function_us is None else f", function {got.function_us:.0f} us/job"
            s.say(
                f"drain {n:,} x{count}: {got.rate:,.0f} jobs/s, server {got.server_us:.0f}"
                f" us/job, worker {got.worker_us:.0f} us/job{function}, peak {got.peak_mb:.0f} MB"
            )
    if args.enqueue:
        enqueuers = [s for s in subjects if not s.peer.name.endswith("-http")]  # = ours
        for _ in range(args.enqueue_rounds):
            for s in enqueuers:
                enqueue_round(s, args)
        for s in enqueuers:
            best = s.figures.enqueue.items()
            s.say("enqueue, best round: " + ", ".join(f"{w} {f.rate:,.0f} jobs/s" for w, f in best))
    for s in subjects:
        peer = s.peer
        slow = getattr(args, "slow_samples", SLOW_SAMPLES)
        samples = args.latency if peer.wakes_on_notify else min(args.latency, slow)
        if not samples:
            continue
        stamp_file = ROOT / ".cache" / f"bench-stamps-{os.getpid()}-{peer.name}.txt"
        warm_up = WARM_UP if peer.wakes_on_notify else 2
        try:
            s.figures.latency_ms = latency(
                peer, s.conninfo, s.conn, samples, stamp_file, warm_up=warm_up
            )
        except RuntimeError as exc:  # one failed latency run keeps the others
            s.say(f"latency FAILED: {exc}")
            continue
        s.say(
            f"latency: p50 {percentile(s.figures.latency_ms, 0.5):.2f} ms, "
            f"p99 {percentile(s.figures.latency_ms, 0.99):.2f} ms ({samples} samples)"
        )


# -- the report ---------------------------------------------------------------------------------


def _num(value: float | None, unit: str = "") -> str:
    if value is None or math.isnan(value):
        return "-"
    text = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{text}{unit}"


def _ratio(ours: float | None, peer: float | None, lower_is_better: bool = False) -> str:
    if not ours or not peer:
        return "-"
    value = peer / ours if lower_is_better else ours / peer
    return f"{value:.2f}x"


def table(results: dict[str, PeerFigures], args: argparse.Namespace, where: str) -> str:
    """The figures: one column per peer, then ``ours / peer`` ratios (> 1: ours is better)."""
    names = list(results)
    others = [n for n in names if not n.startswith("ours")]
    head = ["figure", *names, *[f"ours/{n}" for n in others]]
    rows: list[list[str]] = []

    def add(label: str, values: dict[str, float | None], unit: str, lower: bool = False) -> None:
        ours = values.get("ours")
        rows.append(
            [
                label,
                *[_num(values.get(n), unit) for n in names],
                *[_ratio(ours, values.get(n), lower) for n in others],
            ]
        )

    keys = sorted({key for figures in results.values() for key in figures.drains})
    for n, count in keys:
        scope = f"{n:,} queued, {count} process{'es' if count > 1 else ''}"
        cells = {name: results[name].drains.get((n, count)) for name in names}
        add(f"drain {scope} (jobs/s)", {k: v.rate if v else None for k, v in cells.items()}, "")
        add(
            "  PostgreSQL CPU per job (us)",
            {k: v.server_us if v else None for k, v in cells.items()},
            "",
            lower=True,
        )
        add(
            "  worker CPU per job (us)",
            {k: v.worker_us if v else None for k, v in cells.items()},
            "",
            lower=True,
        )
        if any(v is not None and v.function_us is not None for v in cells.values()):
            add(
                "  function CPU per job (us)",
                {k: v.function_us if v else None for k, v in cells.items()},
                "",
                lower=True,
            )
        add(
            "  worker peak memory (MB)",
            {k: v.peak_mb if v else None for k, v in cells.items()},
            "",
            lower=True,
        )
    ratios = {
        name: rate_ratio({n: f.rate for (n, c), f in results[name].drains.items() if c == 1})
        for name in names
    }
    sizes = {(r[0], r[1]) for r in ratios.values() if r is not None}
    for large, small in sorted(sizes):
        add(
            f"drain rate {large:,} / {small:,} queued",
            {k: r[2] if r and (r[0], r[1]) == (large, small) else None for k, r in ratios.items()},
            "",
        )
    if args.enqueue:
        labels = {
            "batched": f"enqueue batched, {BATCH}/call (jobs/s)",
            "single": "enqueue one per transaction (jobs/s)",
            "client batched": f"enqueue batched via client, {BATCH}/call",
            "client single": "enqueue one per transaction via client",
        }
        for way, label in labels.items():
            ways = {k: v.enqueue.get(way) for k, v in results.items()}
            if all(got is None for got in ways.values()):
                continue
            add(label, {k: g.rate if g else None for k, g in ways.items()}, "")
            add(
                "  PostgreSQL CPU per job (us)",
                {k: g.server_us if g else None for k, g in ways.items()},
                "",
                lower=True,
            )
    if args.latency:
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):
            add(
                f"latency enqueue -> handler {label} (ms)",
                {
                    k: percentile(v.latency_ms, fraction) if v.latency_ms else None
                    for k, v in results.items()
                },
                "",
                lower=True,
            )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        f"python -m bench compare: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{os.cpu_count()} cores, {_cpu_model()}, Python {platform.python_version()}, {where}; "
        f"load average {os.getloadavg()[0]:.2f} at the end",
        "concurrency per worker process: "
        + ", ".join(f"{name} {PEERS[name].concurrency}" for name in names)
        + "; ratios ours/peer > 1 mean ours is better (for CPU, memory, latency: peer/ours)",
        "",
        " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(head)),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _ints(text: str) -> list[int]:
    try:
        return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated whole numbers, got {text!r}"
        ) from None


def _peers(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {unknown or text!r}; expected some of {', '.join(PEERS)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    """The ``compare`` command's options."""
    p = argparse.ArgumentParser(
        prog="python -m bench compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--peers",
        type=_peers,
        default=_peers("ours,ours-http,graphile,pgqueuer"),
        help="which queues (default: ours,ours-http,graphile,pgqueuer)",
    )
    p.add_argument(
        "--sizes",
        type=_ints,
        default=[10_000, 100_000, 1_000_000],
        help="drain sizes, jobs queued (default 10000,100000,1000000)",
    )
    p.add_argument(
        "--large-above",
        type=int,
        default=LARGE,
        help=f"drains above this size run for --large-peers only (default {LARGE:,})",
    )
    p.add_argument(
        "--large-peers",
        type=_peers,
        default=_peers("ours,graphile"),
        help="the peers that also drain sizes above --large-above (default ours,graphile)",
    )
    p.add_argument(
        "--processes",
        type=_ints,
        default=[1, 2, 4],
        help="worker process counts (default 1,2,4; empty: skip)",
    )
    p.add_argument(
        "--process-jobs",
        type=int,
        default=100_000,
        help="jobs per drain of the process-count scenario (default 100000)",
    )
    p.add_argument(
        "--enqueue",
        type=int,
        default=100_000,
        help="jobs enqueued in batches (0: skip enqueue; default 100000)",
    )
    p.add_argument(
        "--single", type=int, default=5_000, help="jobs enqueued one per transaction (default 5000)"
    )
    p.add_argument(
        "--enqueue-rounds",
        type=int,
        default=3,
        help="rounds of the enqueue scenarios, peers alternating; the best counts (default 3)",
    )
    p.add_argument(
        "--latency", type=int, default=1_000, help="latency samples (0: skip; default 1000)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, about 2 minutes: --sizes 10000 --processes 1,2 "
        "--process-jobs 10000 --enqueue 10000 --single 500 --enqueue-rounds 5 --latency 100",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m bench compare``."""
    args = parser().parse_args(argv)
    if args.quick:
        args.sizes, args.processes, args.process_jobs = [10_000], [1, 2], 10_000
        args.enqueue, args.single, args.latency = 10_000, 500, 100
        args.enqueue_rounds = 5  # short rounds: more of them against the machine's noise
        args.slow_samples = 5
    with server() as (admin, where), ExitStack() as stack:
        subjects: list[Subject] = []
        for name in args.peers:
            peer = PEERS[name]()
            prefix = f"bench_{name.replace('-', '_')}"
            conninfo = stack.enter_context(database(admin, prefix, ours=peer.uses_app_jobs))
            peer.setup(conninfo)
            conn = stack.enter_context(psycopg.connect(conninfo, autocommit=True))
            subjects.append(Subject(peer, conninfo, conn))
        measure(subjects, args)
    results = {s.peer.name: s.figures for s in subjects}
    print()
    print(table(results, args, where))
    return 0
