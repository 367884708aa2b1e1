"""The automatic prefetch: how many jobs a worker claims ahead of its free slots."""

from __future__ import annotations

from jobservice.pacing import CLAIM_PERIOD, auto_prefetch


def test_fast_jobs_are_prefetched_for_the_claim_period_at_the_measured_rate() -> None:
    # 50 slots, 10 ms a job: 5,000 jobs/s; claims of 1 ms are shorter than the period
    got = auto_prefetch(concurrency=50, claim_seconds=0.001, job_seconds=0.01, claim_batch=1000)
    assert got == round(5000 * CLAIM_PERIOD)


def test_slow_claims_make_the_buffer_cover_two_of_them() -> None:
    # 5,000 jobs/s and claims of 100 ms: 1,000 jobs keep the slots busy meanwhile
    got = auto_prefetch(concurrency=50, claim_seconds=0.1, job_seconds=0.01, claim_batch=1000)
    assert got == 1000


def test_very_fast_jobs_are_prefetched_at_most_two_claim_batches() -> None:
    got = auto_prefetch(concurrency=10, claim_seconds=0.002, job_seconds=1e-5, claim_batch=200)
    assert got == 400


def test_slow_jobs_are_prefetched_one_at_a_time() -> None:
    # a job of a minute: holding more would keep work from another worker that is idle
    got = auto_prefetch(concurrency=5, claim_seconds=0.002, job_seconds=60.0, claim_batch=200)
    assert got == 1


def test_a_job_measured_at_zero_seconds_does_not_divide_by_zero() -> None:
    got = auto_prefetch(concurrency=5, claim_seconds=0.0, job_seconds=0.0, claim_batch=200)
    assert got == 400
