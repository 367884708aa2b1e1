"""The wire protocol, pure: header parsing, signatures, reply and callback shapes, backoff."""

from __future__ import annotations

import json

import pytest

from jobfn import protocol
from jobfn.callback import CallbackPolicy, backoff_delay, is_retryable_status
from jobfn.types import Outcome

REFERENCE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", b"29"),
    (b"x-worker-id", b"seedref-worker-1"),
    (b"x-job-id", b"7"),
    (b"x-database-id", b"5b720132-17d5-424d-9bcb-ee7b17c13d43"),
    (b"x-callback-url", b"http://127.0.0.1:18091/callback"),
    (b"host", b"127.0.0.1:18080"),
    (b"connection", b"keep-alive"),
]


def test_reference_worker_headers_are_a_job_with_a_callback() -> None:
    job = protocol.parse_job_headers(REFERENCE_HEADERS)
    assert job.worker_id == "seedref-worker-1"
    assert job.job_id == "7"
    assert job.database_id == "5b720132-17d5-424d-9bcb-ee7b17c13d43"
    assert job.callback_url == "http://127.0.0.1:18091/callback"
    assert job.content_length == 29
    assert job.wants_callback
    assert not job.completion_reply
    assert (job.actor_id, job.task, job.attempt, job.max_attempts) == (None, None, None, None)


def test_our_worker_headers_carry_job_facts_and_reply_completion() -> None:
    job = protocol.parse_job_headers(
        [
            (b"x-actor-id", b"a1"),
            (b"x-task-identifier", b"email:send"),
            (b"x-job-attempt", b"2"),
            (b"x-job-max-attempts", b"5"),
            (b"x-job-completion", b"Reply"),
            (b"traceparent", b"00-abc-def-01"),
            (b"x-job-signature", b"t=1,v1=00"),
        ]
    )
    assert (job.actor_id, job.task, job.attempt, job.max_attempts) == ("a1", "email:send", 2, 5)
    assert job.completion_reply
    assert job.traceparent == "00-abc-def-01"
    assert job.signature == "t=1,v1=00"
    assert not job.wants_callback


@pytest.mark.parametrize(
    ("headers", "wants"),
    [
        ([], False),
        ([(b"x-callback-url", b"http://cb/"), (b"x-worker-id", b"w")], False),
        ([(b"x-callback-url", b"http://cb/"), (b"x-job-id", b"1")], False),
        ([(b"x-callback-url", b""), (b"x-worker-id", b"w"), (b"x-job-id", b"1")], False),
        ([(b"x-callback-url", b"http://cb/"), (b"x-worker-id", b"w"), (b"x-job-id", b"1")], True),
    ],
)
def test_a_callback_needs_url_worker_and_job(
    headers: list[tuple[bytes, bytes]], wants: bool
) -> None:
    assert protocol.parse_job_headers(headers).wants_callback is wants


def test_malformed_numbers_are_ignored_not_fatal() -> None:
    job = protocol.parse_job_headers(
        [(b"x-job-attempt", b"two"), (b"x-job-max-attempts", b"-1"), (b"content-length", b"x")]
    )
    assert (job.attempt, job.max_attempts, job.content_length) == (None, None, None)


def test_completion_other_than_reply_means_callback() -> None:
    assert not protocol.parse_job_headers([(b"x-job-completion", b"callback")]).completion_reply


def test_signature_round_trip_and_tampering() -> None:
    header = protocol.sign("s3cret", "42", b'{"a":1}', 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    ok = protocol.verify("s3cret", header, "42", b'{"a":1}', now=1_700_000_010)
    assert ok
    assert not protocol.verify("s3cret", header, "42", b'{"a":2}', now=1_700_000_010)
    assert not protocol.verify("s3cret", header, "43", b'{"a":1}', now=1_700_000_010)
    assert not protocol.verify("other", header, "42", b'{"a":1}', now=1_700_000_010)
    assert not protocol.verify("s3cret", header, "42", b'{"a":1}', now=1_700_000_000 + 301)
    assert not protocol.verify("s3cret", None, "42", b'{"a":1}', now=1_700_000_000)
    assert not protocol.verify("s3cret", "t=x,v1=00", "42", b"", now=0)


def test_signature_accepts_any_of_several_v1_entries() -> None:
    good = protocol.sign("new", "1", b"{}", 100).rpartition("v1=")[2]
    header = f"t=100,v1={'0' * 64},v1={good}"
    assert protocol.verify("new", header, "1", b"{}", now=100)


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://h:1", "http://h:1/callback"),
        ("http://h:1/", "http://h:1/callback"),
        ("http://h:1/hooks/jobs", "http://h:1/hooks/jobs"),
        ("http://h:1/?a=1", "http://h:1/callback?a=1"),
    ],
)
def test_callback_endpoint(url: str, endpoint: str) -> None:
    assert protocol.callback_endpoint(url) == endpoint


def _reply(outcome: Outcome) -> tuple[int, dict[str, str], object]:
    body = protocol.reply_body(outcome)
    headers = {k.decode(): v.decode() for k, v in protocol.reply_headers(outcome, body)}
    assert headers["content-length"] == str(len(body))
    return outcome.status, headers, json.loads(body)


def test_reply_success_with_and_without_result() -> None:
    status, headers, body = _reply(Outcome(200, result_json=b'{"id":3}'))
    assert (status, body) == (200, {"complete": True, "result": {"id": 3}})
    assert "x-job-error" not in headers
    assert _reply(Outcome(200))[2] == {"complete": True}


def test_reply_accepted() -> None:
    assert _reply(Outcome(202, "accepted"))[2] == {"complete": False, "accepted": True}


def test_reply_retryable_failure() -> None:
    status, headers, body = _reply(Outcome(500, "error", error="db down"))
    assert status == 500
    assert headers["x-job-error"] == "true"
    assert "x-job-retry" not in headers
    assert body == {"error": "db down"}


def test_reply_permanent_failure_with_field_errors() -> None:
    errors = [{"loc": ["to"], "msg": "Field required", "type": "missing"}]
    status, headers, body = _reply(
        Outcome(422, "invalid", error="payload is invalid", retry=False, errors=errors)
    )
    assert status == 422
    assert headers["x-job-error"] == "true"
    assert headers["x-job-retry"] == "false"
    assert body == {"error": "payload is invalid", "retry": False, "errors": errors}


def test_callback_bodies_use_the_reference_forms() -> None:
    assert json.loads(protocol.callback_body(Outcome(200))) == {"status": "success"}
    assert json.loads(protocol.callback_body(Outcome(200, result_json=b"[1]"))) == {
        "status": "success",
        "result": [1],
    }
    assert json.loads(protocol.callback_body(Outcome(500, "error", error="x"))) == {
        "status": "error",
        "error": "x",
    }
    assert json.loads(
        protocol.callback_body(Outcome(400, "permanent", error="y", retry=False))
    ) == {
        "status": "error",
        "error": "y",
        "retry": False,
    }
    assert json.loads(protocol.progress_body(40, "copying")) == {
        "status": "progress",
        "progress": 40,
        "message": "copying",
    }


def test_callback_headers() -> None:
    assert protocol.callback_headers(worker_id="w", job_id="1", database_id=None, error=False) == {
        "Content-Type": "application/json",
        "X-Worker-Id": "w",
        "X-Job-Id": "1",
    }
    headers = protocol.callback_headers(
        worker_id="w", job_id="1", database_id="d", error=True, signature="t=1,v1=ab"
    )
    assert headers["X-Database-Id"] == "d"
    assert headers["X-Job-Error"] == "true"
    assert headers["X-Job-Signature"] == "t=1,v1=ab"


def test_backoff_grows_and_is_capped() -> None:
    policy = CallbackPolicy(backoff=0.5, max_backoff=3.0)
    assert [backoff_delay(policy, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delay(policy, 2, jitter=0.5) == 0.5


@pytest.mark.parametrize(
    ("status", "retry"), [(500, True), (503, True), (429, True), (409, False), (404, False)]
)
def test_which_callback_answers_are_retried(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        CallbackPolicy(attempts=0)
    with pytest.raises(ValueError, match="timeout"):
        CallbackPolicy(timeout=0)
