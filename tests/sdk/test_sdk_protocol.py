"""The wire protocol, pure: header parsing, signatures, reply and callback shapes, backoff."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest

from jobfn import protocol
from jobfn.callback_sender import CallbackPolicy, backoff_delay, is_retryable_status
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


SECRET = "s3cret-0123456789abcdef0123456789ab"
OLD_SECRET = "old-secret-0123456789abcdef01234567"
T = 1_700_000_000
BASE = protocol.Envelope(
    purpose="dispatch",
    worker_id="worker-1",
    job_id="42",
    attempt="2",
    database_id="5b720132-17d5-424d-9bcb-ee7b17c13d43",
    callback_url="http://jobs-callback:12345/callback",
    job_error="",
    body=b'{"a":1}',
)


def test_signed_bytes_are_the_documented_layout() -> None:
    assert BASE.message(T) == (
        b"v2\ndispatch\n1700000000\nworker-1\n42\n2\n5b720132-17d5-424d-9bcb-ee7b17c13d43\n"
        b'http://jobs-callback:12345/callback\n\n{"a":1}'
    )
    header = protocol.sign(SECRET, BASE, T)
    digest = hmac.new(SECRET.encode(), BASE.message(T), hashlib.sha256).hexdigest()
    assert header == f"t={T},v2={digest}"
    assert protocol.verify(SECRET, header, BASE, now=T + 10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("purpose", "callback"),
        ("worker_id", "worker-2"),
        ("job_id", "43"),
        ("attempt", "3"),
        ("attempt", ""),
        ("database_id", "00000000-0000-4000-8000-000000000000"),
        ("callback_url", "http://evil.example/callback"),
        ("job_error", "true"),
        ("body", b'{"a":2}'),
        ("body", b'{"a":1} '),
    ],
)
def test_changing_any_signed_field_fails_verification(field: str, value: Any) -> None:
    header = protocol.sign(SECRET, BASE, T)
    tampered = dataclasses.replace(BASE, **{field: value})
    assert not protocol.verify(SECRET, header, tampered, now=T)


@pytest.mark.parametrize(
    ("header", "now"),
    [
        (None, T),
        ("", T),
        (f"t={T}", T),
        ("t=x,v2=" + "0" * 64, T),
        (f"t={T},v1=" + "0" * 64, T),  # scheme v1 is gone
        (f"t=-{T},v2=" + "0" * 64, T),
        (f"t={T},t={T},v2=" + "0" * 64, T),
        (f"t={T},v2=zz", T),
    ],
)
def test_malformed_headers_are_refused(header: str | None, now: int) -> None:
    assert protocol.parse_signature(header) is None or not protocol.verify(
        SECRET, header, BASE, now=now
    )


@pytest.mark.parametrize(
    ("offset", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)]
)
def test_timestamp_tolerance_is_300_seconds_either_way(offset: int, ok: bool) -> None:
    header = protocol.sign(SECRET, BASE, T)
    assert protocol.verify(SECRET, header, BASE, now=T + offset) is ok


def test_a_wrong_secret_or_a_changed_timestamp_fails() -> None:
    header = protocol.sign(SECRET, BASE, T)
    assert not protocol.verify("x" * 40, header, BASE, now=T)
    digest = header.partition(",")[2]
    assert not protocol.verify(SECRET, f"t={T + 1},{digest}", BASE, now=T)


def test_rotation_current_or_previous_secret() -> None:
    verifier = protocol.Signer([SECRET, OLD_SECRET])
    assert verifier.verify(protocol.sign(SECRET, BASE, T), BASE, now=T)
    assert verifier.verify(protocol.sign(OLD_SECRET, BASE, T), BASE, now=T)
    # A signer during a rotation sends one v2 per secret; a verifier that knows either accepts.
    both = protocol.Signer([SECRET, OLD_SECRET]).sign(BASE, T, every_secret=True)
    assert both.count("v2=") == 2
    assert protocol.verify(OLD_SECRET, both, BASE, now=T)
    assert protocol.verify(SECRET, both, BASE, now=T)
    assert not protocol.verify("n" * 40, both, BASE, now=T)
    # The first entry wrong, the second right: still accepted.
    good = protocol.sign(SECRET, BASE, T).rpartition("v2=")[2]
    assert protocol.verify(SECRET, f"t={T},v2={'0' * 64},v2={good}", BASE, now=T)


def test_dispatch_envelope_reads_the_headers_as_sent() -> None:
    job = protocol.parse_job_headers(
        [
            (b"x-worker-id", b"worker-1"),
            (b"x-job-id", b"42"),
            (b"x-job-attempt", b"2"),
            (b"x-database-id", b"5b720132-17d5-424d-9bcb-ee7b17c13d43"),
            (b"x-callback-url", b"http://jobs-callback:12345/callback"),
        ]
    )
    assert protocol.dispatch_envelope(job, b'{"a":1}') == BASE


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


def test_dispatch_headers_are_what_a_function_reads_and_verifies() -> None:
    signer = protocol.Signer(["d" * 32, "e" * 32])
    body = b'{"to":"ada@example.com"}'
    pairs = protocol.dispatch_headers(
        worker_id="worker-1",
        callback_url="http://jobs-callback:12345/callback",
        job_id="42",
        task="send-email",
        attempt=2,
        max_attempts=5,
        body=body,
        database_id="00000000-0000-4000-8000-000000000001",
        actor_id="user-7",
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        signer=signer,
        timestamp=1_700_000_000,
    )
    assert [name for name, _ in pairs] == [
        "Content-Type",
        "X-Worker-Id",
        "X-Job-Id",
        "X-Database-Id",
        "X-Callback-Url",
        "X-Actor-Id",
        "X-Task-Identifier",
        "X-Job-Attempt",
        "X-Job-Max-Attempts",
        "X-Job-Completion",
        "traceparent",
        "X-Job-Signature",
    ]
    job = protocol.parse_job_headers(protocol.asgi_headers(pairs))
    assert (job.job_id, job.task, job.attempt, job.max_attempts) == ("42", "send-email", 2, 5)
    assert job.actor_id == "user-7"
    assert job.completion_reply
    assert job.signature is not None
    assert job.signature.count("v2=") == 2  # every secret: verifiers mid-rotation accept it
    envelope = protocol.dispatch_envelope(job, body)
    assert protocol.Signer(["e" * 32]).verify(job.signature, envelope, now=1_700_000_000)
    assert not signer.verify(
        job.signature, protocol.dispatch_envelope(job, body + b" "), now=1_700_000_000
    )


def test_dispatch_headers_leave_out_what_is_not_given() -> None:
    pairs = dict(
        protocol.dispatch_headers(
            worker_id="w-01",
            callback_url="http://cb/",
            job_id="1",
            task="t",
            attempt=1,
            max_attempts=25,
            body=b"{}",
            completion_reply=False,
            content_length=True,
        )
    )
    assert "X-Database-Id" not in pairs
    assert "X-Actor-Id" not in pairs
    assert "X-Job-Completion" not in pairs
    assert "X-Job-Signature" not in pairs
    assert "traceparent" not in pairs
    assert pairs["Content-Length"] == "2"


_JOBS: list[tuple[str, str | None, str | None, str, int | str, bytes]] = [
    ("1", None, None, "noop", 1, b"{}"),
    ("12345", "5b720132-17d5-424d-9bcb-ee7b17c13d43", None, "send-email", 3, b'{"to":"a"}'),
    ("7", None, "actor-9", "x", 25, b""),
    ("8", "db-\u00e9", "actor-\udcff", "t\u00e2che", "2", '{"\u00e9":1}'.encode()),
]


@pytest.mark.parametrize("completion_reply", [True, False])
def test_precomputed_asgi_dispatch_headers_equal_the_built_ones(completion_reply: bool) -> None:
    worker_id, callback_url = "worker-1", "http://callback:12345/"
    fast = protocol.AsgiDispatchHeaders(
        worker_id=worker_id, callback_url=callback_url, completion_reply=completion_reply
    )
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for job_id, database_id, actor_id, task, attempt, body in _JOBS * 2:  # twice: templates kept
        built = protocol.asgi_headers(
            protocol.dispatch_headers(
                worker_id=worker_id,
                callback_url=callback_url,
                job_id=job_id,
                task=task,
                attempt=attempt,
                max_attempts=25,
                body=body,
                database_id=database_id,
                actor_id=actor_id,
                completion_reply=completion_reply,
                traceparent=trace,
                content_length=True,
            )
        )
        assert built == fast.headers(
            job_id=job_id,
            task=task,
            attempt=attempt,
            max_attempts=25,
            body=body,
            database_id=database_id,
            actor_id=actor_id,
            traceparent=trace,
        )
