"""The outside poller: counts a queue's pending rows and samples CPU while workers drain it.

Server CPU is read from ``/proc/<pid>/schedstat`` (nanoseconds on CPU) of the PostgreSQL
processes serving the benchmark database (``pg_stat_activity``: client backends and
autovacuum workers; the poller's own backend is left out). Worker CPU is the sum of
``/proc/<pid>/task/<tid>/schedstat`` over the threads of the worker processes, and so is the
CPU of the function processes that serve HTTP dispatch, when there are any: nanoseconds, where
``/proc/<pid>/stat`` counts clock ticks (10 ms), too coarse for a short drain.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from bench.measure import Sample, poll_interval

TICKS = os.sysconf("SC_CLK_TCK")
PIDS_EVERY = 10
"""Re-read the list of server processes every this many polls."""


def backend_cpu_seconds(pid: int) -> float | None:
    """Seconds on CPU of one (single-threaded) server process, or ``None`` when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_seconds(pid: int) -> float | None:
    """Seconds on CPU of a whole process (its live threads), or ``None`` when it is gone.

    Summed from each thread's ``schedstat`` (nanoseconds); where the kernel has none, from
    the process's user + system clock ticks in ``/proc/<pid>/stat``.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    total = 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except FileNotFoundError:
            if not (task / "stat").exists():
                continue  # the thread ended between listing and reading
            return _ticks_cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def _ticks_cpu_seconds(pid: int) -> float | None:
    """User + system seconds of a whole process from ``/proc/<pid>/stat`` (clock ticks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class CpuMeter:
    """Cumulative CPU of a changing set of processes since the meter started.

    Processes seen at the first reading count from that reading; processes that appear later
    count from their start (``late_from_zero``: server backends, which connect while the drain
    runs) or from their first reading (worker processes, passed once they are ready, so their
    start-up is left out); processes that vanish keep their last reading.
    """

    def __init__(self, read: Callable[[int], float | None], *, late_from_zero: bool) -> None:
        self._read = read
        self._late_from_zero = late_from_zero
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._started = False

    def total(self, pids: Sequence[int]) -> float:
        """CPU seconds used since the first call by every process ever passed."""
        for pid in pids:
            value = self._read(pid)
            if value is None:
                continue
            if pid not in self._base:
                late = self._started and self._late_from_zero
                self._base[pid] = 0.0 if late else value
            self._last[pid] = value
        self._started = True
        return sum(self._last[pid] - self._base[pid] for pid in self._last)


class Poller:
    """A thread sampling ``pending_sql`` (one integer) until stopped or pending is 0."""

    def __init__(
        self,
        conninfo: str,
        pending_sql: str,
        pids_sql: str,
        worker_pids: Callable[[], Sequence[int]],
        function_pids: Callable[[], Sequence[int]] = lambda: (),
    ) -> None:
        self.samples: list[Sample] = []
        self._conninfo = conninfo
        self._pending_sql = pending_sql
        self._pids_sql = pids_sql
        self._worker_pids = worker_pids
        self._function_pids = function_pids
        self._stop = threading.Event()
        self._empty = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)
        self._connected = threading.Event()

    def __enter__(self) -> Poller:
        self._thread.start()
        self._connected.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_empty(self, within: float) -> None:
        """Block until a poll saw no pending rows; raise after ``within`` seconds."""
        if not self._empty.wait(within):
            if self._error is not None:
                raise RuntimeError(f"the poller failed: {self._error}") from self._error
            last = self.samples[-1].pending if self.samples else "?"
            raise RuntimeError(f"the queue was not drained within {within:.0f} s ({last} left)")
        if self._error is not None:
            raise RuntimeError(f"the poller failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            self._poll()
        except BaseException as exc:  # reported by wait_empty
            self._error = exc
            self._empty.set()
        finally:
            self._connected.set()

    def _poll(self) -> None:
        server = CpuMeter(backend_cpu_seconds, late_from_zero=True)
        worker = CpuMeter(process_cpu_seconds, late_from_zero=False)
        function = CpuMeter(process_cpu_seconds, late_from_zero=False)
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            backends: list[int] = []
            polls = 0
            workers_seen = -1
            self._connected.set()
            while not self._stop.is_set():
                workers = self._worker_pids()
                # Re-read the server processes now and then, and as soon as workers are ready.
                if polls % PIDS_EVERY == 0 or len(workers) != workers_seen:
                    backends = [int(str(r[0])) for r in conn.execute(self._pids_sql).fetchall()]
                    workers_seen = len(workers)
                polls += 1
                before = time.monotonic()
                row = conn.execute(self._pending_sql).fetchone()
                after = time.monotonic()
                pending = int(str(row[0])) if row is not None else 0
                self.samples.append(
                    Sample(
                        at=(before + after) / 2,
                        pending=pending,
                        server_cpu=server.total(backends),
                        worker_cpu=worker.total(workers),
                        function_cpu=function.total(self._function_pids()),
                    )
                )
                if pending == 0:
                    self._empty.set()
                    return
                self._stop.wait(max(0.0, poll_interval(after - before) - (after - before)))
