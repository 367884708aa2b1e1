"""Prometheus metrics of the job service (one registry per service, served at ``/metrics``).

Counters by task: ``jobs_claimed_total``, ``jobs_completed_total``, ``jobs_failed_total``
(failed for good), ``jobs_retried_total`` (failed attempts that will run again),
``jobs_awaiting_callback_total``; histogram ``jobs_duration_seconds`` (dispatch → reply);
gauges by task refreshed by a periodic query: ``jobs_queue_depth`` (runnable, waiting),
``jobs_running``, ``jobs_queue_lag_seconds`` (age of the oldest runnable job).

Faults: ``jobs_unreachable_total`` by task (dispatches that never reached the function; no
attempt used), ``jobs_route_breaker_open`` by route (1 while its breaker is open or half-open),
``jobs_outcomes_refused_total`` by task and outcome (``completed``/``failed`` outcomes the
database refused because the job had been taken away), ``jobs_rescued_total`` by outcome.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString
from psycopg_pool import AsyncConnectionPool

from jobservice.aio import wait_event
from jobservice.logs import event
from jobservice.queries import Queries

log = logging.getLogger("jobservice.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _ByTask:
    """A labelled metric whose children are cached per task (labels() is not free)."""

    __slots__ = ("children", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[str, Any] = {}

    def __call__(self, task: str) -> Any:
        child = self.children.get(task)
        if child is None:
            child = self.children[task] = self.metric.labels(task=task)
        return child


class Durations:
    """One task's series of a :class:`TaskDurations` histogram."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        """Count one duration (in the first bucket whose bound is at least ``seconds``)."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class TaskDurations:
    """A histogram by task, exposed exactly as ``prometheus_client.Histogram`` with the label
    ``task`` would be (``_bucket``, ``_count``, ``_sum``, ``_created``), but counted without
    a lock: observed once per job on the event loop's thread, it costs a bisection and two
    additions instead of two locked increments and a scan of the buckets."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = (*sorted(float(b) for b in buckets if b != math.inf), math.inf)
        self._le = [str(floatToGoString(b)) for b in self.bounds]  # type: ignore[no-untyped-call]
        self.children: dict[str, Durations] = {}
        registry.register(self)

    def __call__(self, task: str) -> Durations:
        """The series of ``task``."""
        child = self.children.get(task)
        if child is None:
            child = self.children[task] = Durations(self.bounds)
        return child

    def describe(self) -> list[Metric]:
        """The metric's name and type, for the registry."""
        return [Metric(self.name, self.documentation, "histogram")]

    def collect(self) -> Iterable[Metric]:
        """The current samples of every task's series."""
        name = self.name
        metric = Metric(name, self.documentation, "histogram")
        created = getattr(prometheus_metrics, "_use_created", True)
        for task, child in list(self.children.items()):
            total = 0
            for le, count in zip(self._le, list(child.counts), strict=True):
                total += count
                metric.add_sample(f"{name}_bucket", {"task": task, "le": le}, float(total))
            metric.add_sample(f"{name}_count", {"task": task}, float(total))
            metric.add_sample(f"{name}_sum", {"task": task}, child.sum)
            if created:
                metric.add_sample(f"{name}_created", {"task": task}, child.created)
        return [metric]


class Metrics:
    """The service's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.claimed = _ByTask(Counter("jobs_claimed", "Jobs claimed", ["task"], registry=r))
        self.completed = _ByTask(Counter("jobs_completed", "Jobs completed", ["task"], registry=r))
        self.failed = _ByTask(Counter("jobs_failed", "Jobs failed for good", ["task"], registry=r))
        self.retried = _ByTask(
            Counter("jobs_retried", "Failed attempts that will be retried", ["task"], registry=r)
        )
        self.awaiting = _ByTask(
            Counter("jobs_awaiting_callback", "Jobs answered 202", ["task"], registry=r)
        )
        self.duration = TaskDurations(
            "jobs_duration_seconds", "Dispatch to reply", _BUCKETS, registry=r
        )
        self.depth = Gauge("jobs_queue_depth", "Runnable jobs waiting", ["task"], registry=r)
        self.running = Gauge("jobs_running", "Locked (running) jobs", ["task"], registry=r)
        self.lag = Gauge(
            "jobs_queue_lag_seconds", "Age of the oldest runnable job", ["task"], registry=r
        )
        self.notifications_ok = Gauge(
            "jobs_notifications_ok", "1 while LISTEN/NOTIFY wake-ups arrive", registry=r
        )
        self.notifications_ok.set(1)
        self.insecure_callbacks = Gauge(
            "jobs_insecure_callbacks",
            "1 when unsigned callbacks are accepted (JOBS_INSECURE_CALLBACKS=true)",
            registry=r,
        )
        self.unreachable = _ByTask(
            Counter(
                "jobs_unreachable",
                "Dispatches that did not reach the function (no attempt used)",
                ["task"],
                registry=r,
            )
        )
        self.breaker_open = Gauge(
            "jobs_route_breaker_open",
            "1 while the breaker of a function route is open or half-open",
            ["route"],
            registry=r,
        )
        self.refused = Counter(
            "jobs_outcomes_refused",
            "Outcomes the database refused because the job was no longer this worker's",
            ["task", "outcome"],
            registry=r,
        )
        self.rescued = Counter(
            "jobs_rescued",
            "Jobs taken back from dead workers by this worker's rescues",
            ["outcome"],
            registry=r,
        )
        self._seen_tasks: set[str] = set()

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)

    def set_queue(self, rows: list[tuple[str, int, int, float]]) -> None:
        """Update the queue gauges from ``queue_stats`` rows; tasks gone are reset to 0."""
        seen = set()
        for task, queued, running, lag in rows:
            seen.add(task)
            self.depth.labels(task=task).set(queued)
            self.running.labels(task=task).set(running)
            self.lag.labels(task=task).set(lag)
        for task in self._seen_tasks - seen:
            self.depth.labels(task=task).set(0)
            self.running.labels(task=task).set(0)
            self.lag.labels(task=task).set(0)
        self._seen_tasks |= seen

    async def poll_queue(
        self,
        pool: AsyncConnectionPool[Any],
        queries: Queries,
        interval: float,
        stop: asyncio.Event,
    ) -> None:
        """Refresh the queue gauges every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(queries.queue_stats)
                    self.set_queue(await cur.fetchall())
            except Exception as exc:
                event(log, logging.WARNING, "metrics_query_failed", str(exc))
            await wait_event(stop, interval)
