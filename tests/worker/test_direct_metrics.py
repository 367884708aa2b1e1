"""``jobs_duration_seconds`` is counted without a lock per job (:class:`TaskDurations`) and reads
exactly as the ``prometheus_client`` histogram it replaces would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from jobservice.metrics import Metrics, TaskDurations

BUCKETS = (0.001, 0.01, 0.1, 1, 10)
OBSERVED = {
    "email": [0.0, 0.001, 0.0011, 0.05, 0.1, 3.0, 10.0, 11.0, 250.0],
    "noop": [0.0004] * 5,
}


def exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_durations_read_as_a_prometheus_histogram_would() -> None:
    ours_registry = CollectorRegistry()
    ours = TaskDurations("jobs_duration_seconds", "Dispatch to reply", BUCKETS, ours_registry)
    theirs_registry = CollectorRegistry()
    theirs = Histogram(
        "jobs_duration_seconds",
        "Dispatch to reply",
        ["task"],
        buckets=BUCKETS,
        registry=theirs_registry,
    )
    for task, seconds in OBSERVED.items():
        for value in seconds:
            ours(task).observe(value)
            theirs.labels(task=task).observe(value)

    assert exposition(ours_registry) == exposition(theirs_registry)
    rendered = generate_latest(ours_registry).decode()
    assert 'jobs_duration_seconds_bucket{le="+Inf",task="email"} 9.0' in rendered
    assert 'jobs_duration_seconds_created{task="noop"}' in rendered


def test_the_service_metrics_expose_job_durations() -> None:
    metrics = Metrics()
    metrics.duration("noop").observe(0.002)
    rendered = metrics.render().decode()
    assert "# TYPE jobs_duration_seconds histogram" in rendered
    assert 'jobs_duration_seconds_bucket{le="0.0025",task="noop"} 1.0' in rendered
    assert 'jobs_duration_seconds_count{task="noop"} 1.0' in rendered
