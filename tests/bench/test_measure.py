"""The comparison's arithmetic: drain windows from pending-row samples, percentiles."""

from __future__ import annotations

import os
import time

import pytest

from bench.measure import Sample, crossing, drain_window, percentile, poll_interval, rate_ratio
from bench.probe import process_cpu_seconds


def test_the_rate_is_80_percent_of_the_jobs_between_90_and_10_percent_left() -> None:
    # 1,000 jobs, 100 done every 0.1 s after a start-up pause: 1,000 jobs/s.
    samples = [Sample(at=0.0, pending=1000), Sample(at=1.0, pending=1000)]
    samples += [Sample(at=1.0 + k / 10, pending=1000 - 100 * k) for k in range(1, 11)]
    window = drain_window(samples, 1000)
    assert window.rate == pytest.approx(1000.0)


def test_crossings_are_interpolated_between_samples() -> None:
    samples = [Sample(at=0.0, pending=100), Sample(at=1.0, pending=0)]
    assert crossing(samples, 90)[0] == pytest.approx(0.1)
    assert crossing(samples, 10)[0] == pytest.approx(0.9)


def test_cpu_per_job_comes_from_the_same_window() -> None:
    samples = [
        Sample(at=0.0, pending=100, server_cpu=0.0, worker_cpu=0.0),
        Sample(at=1.0, pending=91, server_cpu=1.0, worker_cpu=2.0),
        Sample(at=1.5, pending=50, server_cpu=1.004, worker_cpu=2.008),
        Sample(at=2.0, pending=11, server_cpu=1.008, worker_cpu=2.016),
        Sample(at=2.1, pending=1, server_cpu=1.009, worker_cpu=2.018),
    ]
    window = drain_window(samples, 100)
    # From the last sample above 90 left (91) to the first at or below 10 left (1).
    assert window.server_us_per_job == pytest.approx(9_000 / 90)
    assert window.worker_us_per_job == pytest.approx(18_000 / 90)


def test_the_function_processes_cpu_per_job_comes_from_the_same_window() -> None:
    samples = [
        Sample(at=0.0, pending=100, function_cpu=5.0),
        Sample(at=1.0, pending=91, function_cpu=5.0),
        Sample(at=2.0, pending=11, function_cpu=5.004),
        Sample(at=2.1, pending=1, function_cpu=5.009),
    ]
    assert drain_window(samples, 100).function_us_per_job == pytest.approx(9_000 / 90)
    without_functions = [Sample(at=0.0, pending=100), Sample(at=1.0, pending=0)]
    assert drain_window(without_functions, 100).function_us_per_job == 0


def test_the_rate_ratio_is_the_largest_backlog_over_the_smallest() -> None:
    assert rate_ratio({10_000: 8_000.0, 1_000_000: 4_000.0, 100_000: 7_000.0}) == (
        1_000_000,
        10_000,
        0.5,
    )
    assert rate_ratio({10_000: 8_000.0}) is None


def test_a_queue_that_never_drained_is_an_error_not_a_rate() -> None:
    samples = [Sample(at=0.0, pending=100), Sample(at=1.0, pending=95)]
    with pytest.raises(ValueError, match="never fell"):
        drain_window(samples, 100)


def test_too_few_jobs_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 10 jobs"):
        drain_window([Sample(at=0.0, pending=0)], 5)


def test_percentiles_and_poll_interval() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.99) == 99.0
    assert poll_interval(0.001) == 0.020
    assert poll_interval(0.01) == pytest.approx(0.1)


def test_with_several_workers_the_window_starts_when_the_last_is_ready() -> None:
    # 1,000 jobs: 100 per 0.1 s from t=0; the last worker is ready at t=0.25 (750 left).
    samples = [Sample(at=k / 10, pending=1000 - 100 * k) for k in range(11)]
    window = drain_window(samples, 1000, not_before=0.25)
    assert window.rate == pytest.approx((750 - 100) / (0.9 - 0.25))


def test_a_drain_mostly_over_before_the_last_worker_started_is_refused() -> None:
    samples = [Sample(at=k / 10, pending=1000 - 100 * k) for k in range(11)]
    with pytest.raises(ValueError, match="use more jobs"):
        drain_window(samples, 1000, not_before=0.75)


def test_process_cpu_is_read_finer_than_clock_ticks() -> None:
    # a short drain's worker or function process may use less than one 10 ms clock tick
    # per process: the reading must still see a 2 ms burst of CPU, and not inflate it
    before = process_cpu_seconds(os.getpid())
    own_before = time.thread_time()
    while time.thread_time() - own_before < 0.002:
        pass
    after = process_cpu_seconds(os.getpid())
    assert before is not None
    assert after is not None
    assert 0.002 <= after - before < 0.010
