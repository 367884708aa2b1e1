"""The in-process transport's precomputed headers are the ones ``jobfn.protocol`` builds."""

from __future__ import annotations

from jobfn import protocol
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch


def test_in_process_headers_equal_the_dispatch_headers_of_each_job() -> None:
    dispatch = Dispatch(
        worker_id="worker-1",
        callback_url="http://callback:12345/",
        concurrency=1,
        timeout_for=lambda task: 30.0,
    )
    jobs = [
        ClaimedJob(1, "noop", b"{}", None, None, 1, 25),
        ClaimedJob(
            2, "send-email", b'{"to":"a"}', "5b720132-17d5-424d-9bcb-ee7b17c13d43", None, 3, 5
        ),
        ClaimedJob(3, "x", b"", None, "actor-9", 25, 25),
    ]
    for job in jobs:
        fast = dispatch.asgi_headers(job)
        built = protocol.asgi_headers(dispatch.headers(job, signed=False, content_length=True))
        # Each call draws a fresh traceparent: compare it by name only.
        assert [h if h[0] != b"traceparent" else h[0] for h in fast] == [
            h if h[0] != b"traceparent" else h[0] for h in built
        ]
        assert dict(fast)[b"x-job-id"] == str(job.id).encode()
