"""A ``jobfn`` function's port, attacked from 127.0.0.1: ``jobfn serve`` as a process.

With a secret, nothing runs without a valid dispatch signature. Without one (so that the
reference Node worker can drive it), the function is not an open relay: it calls back only to
the URLs it allows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobfn import protocol

if TYPE_CHECKING:
    from tests.security.conftest import Recorder, StartFunction, Wire

BODY = json.dumps({"to": "victim@example.com"}).encode()


def _job_headers(callback_url: str, *, attempt: str = "1", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Worker-Id": "worker-x",
        "X-Job-Id": "77",
        "X-Database-Id": "5b720132-17d5-424d-9bcb-ee7b17c13d43",
        "X-Callback-Url": callback_url,
        "X-Job-Attempt": attempt,
        **extra,
    }


def _signed(headers: dict[str, str], body: bytes, secret: str) -> dict[str, str]:
    job = protocol.parse_job_headers([(k.lower().encode(), v.encode()) for k, v in headers.items()])
    envelope = protocol.dispatch_envelope(job, body)
    return {**headers, "X-Job-Signature": protocol.sign(secret, envelope, int(time.time()))}


def test_with_a_secret_an_unsigned_or_badly_signed_dispatch_runs_nothing(
    function_process: StartFunction, recorder: Recorder, wire: type[Wire]
) -> None:
    fn = function_process(
        JOBS_SIGNING_SECRET=wire.SECRET, JOBS_SIGNING_SECRET_PREVIOUS=wire.OLD_SECRET
    )
    callback = f"{recorder.url}/callback"
    unsigned = _job_headers(callback)
    assert wire.post(fn.url, BODY, unsigned).status_code == 401
    direct = wire.post(fn.url, BODY, {"Content-Type": "application/json"})
    assert direct.status_code == 401
    forged = _signed(unsigned, BODY, "someone-else-" + "x" * 32)
    assert wire.post(fn.url, BODY, forged).status_code == 401
    # A valid signature does not cover another attempt, body or callback URL.
    good = _signed(unsigned, BODY, wire.SECRET)
    for changed, body in (
        ({"X-Job-Attempt": "2"}, BODY),
        ({"X-Callback-Url": "http://attacker.example/callback"}, BODY),
        ({}, b'{"to": "someone@else.example"}'),
    ):
        assert wire.post(fn.url, body, {**good, **changed}).status_code == 401
    assert fn.ran() == []
    assert recorder.received == []

    assert wire.post(fn.url, BODY, good).status_code == 200
    rotated = _signed(unsigned, BODY, wire.OLD_SECRET)
    assert wire.post(fn.url, BODY, rotated).status_code == 200
    assert fn.ran() == [{"to": "victim@example.com"}] * 2
    # Its callbacks are signed for that attempt and that URL, purpose "callback".
    wire.wait_until(lambda: len(recorder.received) >= 2, "the two callbacks")
    first = recorder.received[0]
    assert first.headers["x-job-attempt"] == "1"
    envelope = protocol.Envelope(
        "callback", "worker-x", "77", "1", unsigned["X-Database-Id"], callback, "", first.body
    )
    assert protocol.verify(wire.SECRET, first.headers["x-job-signature"], envelope, now=time.time())


def test_without_a_secret_callbacks_go_only_to_allowed_urls(
    function_process: StartFunction, make_recorder: Callable[[], Recorder], wire: type[Wire]
) -> None:
    allowed, foreign = make_recorder(), make_recorder()
    fn = function_process(JOBS_CALLBACK_ALLOWED_URLS=allowed.url)
    refused = wire.post(fn.url, BODY, _job_headers(f"{foreign.url}/callback"))
    assert refused.status_code == 400
    assert foreign.url in refused.json()["error"]
    assert fn.ran() == []
    assert foreign.received == []
    wire.wait_until(lambda: "is not allowed" in fn.output(), "the refusal to be logged")

    ok = wire.post(fn.url, BODY, _job_headers(f"{allowed.url}/callback"))
    assert ok.status_code == 200
    wire.wait_until(lambda: allowed.received, "the allowed callback")
    assert json.loads(allowed.received[0].body)["status"] == "success"
    assert foreign.received == []


def test_without_a_secret_or_allowed_urls_there_are_no_callbacks_at_all(
    function_process: StartFunction, recorder: Recorder, wire: type[Wire]
) -> None:
    fn = function_process()
    assert "JOBS_SIGNING_SECRET is not set" in fn.output()
    refused = wire.post(fn.url, BODY, _job_headers(f"{recorder.url}/callback"))
    assert refused.status_code == 400
    # A worker that settles from the reply (ours) still gets the job done: no callback needed.
    reply_mode = _job_headers(f"{recorder.url}/callback", **{"X-Job-Completion": "reply"})
    ok = wire.post(fn.url, BODY, reply_mode)
    assert ok.status_code == 200
    assert fn.ran() == [{"to": "victim@example.com"}]
    assert recorder.received == []
