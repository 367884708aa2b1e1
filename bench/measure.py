"""Pure arithmetic of the comparison: drain rates from pending-row samples, percentiles.

The drain method is the same for every queue: an outside poller counts the pending rows; the
rate is 80 % of the jobs over the time from 90 % left to 10 % left (start-up and the tail are
left out). Crossing times are interpolated linearly between the two samples around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One poll: when (monotonic seconds), pending rows, and cumulative CPU seconds so far (of
    the server processes, the worker processes and the function processes, if any)."""

    at: float
    pending: int
    server_cpu: float = 0.0
    worker_cpu: float = 0.0
    function_cpu: float = 0.0


@dataclass(frozen=True)
class Window:
    """The measured part of a drain."""

    rate: float
    """Jobs per second from 90 % left to 10 % left."""
    server_us_per_job: float
    """PostgreSQL CPU (the benchmark database's server processes) per job, microseconds."""
    worker_us_per_job: float
    """The worker processes' CPU per job, microseconds."""
    function_us_per_job: float = 0.0
    """The function processes' CPU per job (HTTP dispatch), microseconds; 0 without any."""


def crossing(samples: Sequence[Sample], level: float) -> tuple[float, int]:
    """``(time, index)``: when pending first fell to ``level`` or below, interpolated.

    ``index`` is the first sample at or below ``level``. Raises :class:`ValueError` when no
    sample is.
    """
    for index, sample in enumerate(samples):
        if sample.pending <= level:
            if index == 0:
                return sample.at, 0
            before = samples[index - 1]
            drop = before.pending - sample.pending
            if drop <= 0:
                return sample.at, index
            share = (before.pending - level) / drop
            return before.at + share * (sample.at - before.at), index
    raise ValueError(f"pending rows never fell to {level:.0f}")


def pending_at(samples: Sequence[Sample], at: float) -> tuple[float, int]:
    """``(pending, index)``: pending rows at time ``at``, interpolated; ``index`` is the first
    sample at or after ``at``."""
    for index, sample in enumerate(samples):
        if sample.at >= at:
            if index == 0:
                return float(sample.pending), 0
            before = samples[index - 1]
            share = (at - before.at) / (sample.at - before.at)
            return before.pending + share * (sample.pending - before.pending), index
    return float(samples[-1].pending), len(samples) - 1


def drain_window(samples: Sequence[Sample], total: int, not_before: float | None = None) -> Window:
    """The rate (and CPU per job) of a drain of ``total`` jobs from its samples.

    ``not_before``: when the last worker process was ready. When that is after the 90 % mark
    (several processes starting while the first already drains), the window starts there
    instead, so that every rate is measured with all the workers running.
    """
    if total < 10:
        raise ValueError(f"a drain needs at least 10 jobs to measure, got {total}")
    t90, i90 = crossing(samples, 0.9 * total)
    t10, i10 = crossing(samples, 0.1 * total)
    jobs = 0.8 * total
    if not_before is not None and not_before > t90:
        left, i90 = pending_at(samples, not_before)
        t90 = not_before
        jobs = left - 0.1 * total
        if jobs < 0.2 * total:
            raise ValueError(
                "the workers drained most of the queue while the last one was starting: "
                "use more jobs"
            )
    seconds = t10 - t90
    if seconds <= 0:
        raise ValueError("the drain was faster than the poller: use more jobs")
    # CPU: from the last sample above the 90 % level to the first at or below the 10 % level.
    first = samples[max(0, i90 - 1)]
    last = samples[i10]
    done = first.pending - last.pending
    server = last.server_cpu - first.server_cpu
    worker = last.worker_cpu - first.worker_cpu
    function = last.function_cpu - first.function_cpu
    per_job = 1e6 / done if done > 0 else float("nan")
    return Window(jobs / seconds, server * per_job, worker * per_job, function * per_job)


def rate_ratio(rates: dict[int, float]) -> tuple[int, int, float] | None:
    """``(largest, smallest, rate at largest / rate at smallest)`` over drain sizes, or ``None``
    with fewer than two sizes: how a queue's rate holds up as the backlog grows."""
    if len(rates) < 2:
        return None
    small, large = min(rates), max(rates)
    return large, small, rates[large] / rates[small]


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``samples``."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def poll_interval(last_query_seconds: float, floor: float = 0.020) -> float:
    """Seconds between polls: ``floor``, or ten times the last count's duration when that is
    longer (so counting a large backlog never takes more than a tenth of a connection)."""
    return max(floor, 10.0 * last_query_seconds)
