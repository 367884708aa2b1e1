"""Reading a function's reply: every row of the reply table (jobservice.verdict)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from jobservice.verdict import Kind, connection_error, interpret, timed_out, too_large

JSON = {"content-type": "application/json"}


class Case(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    kind: Kind
    result: str | None
    message: str | None


CASES = [
    # other 2xx: completed; a jobfn reply's "result" (or its other keys) is the job's result,
    # any other JSON body is kept as it is
    Case(200, JSON, b'{"complete":true}', Kind.COMPLETED, None, None),
    Case(200, JSON, b'{"complete": true, "result": {"n": 1}}', Kind.COMPLETED, '{"n":1}', None),
    Case(200, JSON, b'{"complete": true, "result": null}', Kind.COMPLETED, None, None),
    Case(200, JSON, b'{"complete": true, "result": [1, 2]}', Kind.COMPLETED, "[1,2]", None),
    Case(200, JSON, b'{"complete": true, "dryRun": true}', Kind.COMPLETED, '{"dryRun":true}', None),
    Case(200, JSON, b'{"sent": 3}', Kind.COMPLETED, '{"sent": 3}', None),
    Case(200, JSON, b"[1, 2]", Kind.COMPLETED, "[1, 2]", None),
    Case(201, {}, b"", Kind.COMPLETED, None, None),
    Case(204, {}, b"", Kind.COMPLETED, None, None),
    Case(200, {"content-type": "text/plain"}, b"ok", Kind.COMPLETED, None, None),
    Case(200, {}, b"{not json", Kind.COMPLETED, None, None),
    # declared JSON that is not JSON: never a completion, a retryable failure
    Case(
        200,
        JSON,
        b"not json",
        Kind.RETRY,
        None,
        "HTTP 200 OK declared JSON but the body is not JSON: 'not json'",
    ),
    Case(
        200,
        JSON,
        b'{"ratio": NaN}',
        Kind.RETRY,
        None,
        """HTTP 200 OK declared JSON but the body is not JSON: '{"ratio": NaN}'""",
    ),
    # JSON in another Unicode encoding is stored as UTF-8 text
    Case(200, JSON, '{"a": "é"}'.encode("utf-16"), Kind.COMPLETED, '{"a":"é"}', None),
    # 202: the function calls back
    Case(202, JSON, b'{"accepted": true}', Kind.CALLBACK, None, None),
    # X-Job-Error: true (any case) → failed attempt with the body's error/message
    Case(200, {**JSON, "x-job-error": "true"}, b'{"message": "x"}', Kind.RETRY, None, "x"),
    Case(200, {**JSON, "x-job-error": "TRUE"}, b'{"error": "bad"}', Kind.RETRY, None, "bad"),
    Case(
        202,
        {"x-job-error": "True"},
        b"",
        Kind.RETRY,
        None,
        "the function reported an error (X-Job-Error) without a message",
    ),
    # status >= 400: the function's own message plus the status
    Case(
        500,
        JSON,
        b'{"error": "db down"}',
        Kind.RETRY,
        None,
        "HTTP 500 Internal Server Error: db down",
    ),
    Case(
        503,
        {},
        b"upstream unavailable",
        Kind.RETRY,
        None,
        "HTTP 503 Service Unavailable: upstream unavailable",
    ),
    Case(404, {}, b"", Kind.RETRY, None, "HTTP 404 Not Found"),
    Case(
        400,
        JSON,
        b'{"message": "missing field"}',
        Kind.RETRY,
        None,
        "HTTP 400 Bad Request: missing field",
    ),
    Case(
        409,
        JSON,
        b'{"error": {"message": "invalid"}}',
        Kind.RETRY,
        None,
        "HTTP 409 Conflict: invalid",
    ),
    Case(599, {}, b"", Kind.RETRY, None, "HTTP 599"),
    # permanent failures
    Case(
        400,
        {**JSON, "x-job-retry": "false"},
        b'{"error": "no such user"}',
        Kind.FAILED,
        None,
        "HTTP 400 Bad Request: no such user",
    ),
    Case(
        403,
        JSON,
        b'{"error": "bad payload", "retry": false}',
        Kind.FAILED,
        None,
        "HTTP 403 Forbidden: bad payload",
    ),
    Case(
        500,
        {"x-job-retry": "false"},
        b"x",
        Kind.FAILED,
        None,
        "HTTP 500 Internal Server Error: x",
    ),
    # anything else
    Case(302, {"location": "/x"}, b"", Kind.RETRY, None, "unexpected reply HTTP 302 Found"),
]


@pytest.mark.parametrize("case", CASES)
def test_reply_table(case: Case) -> None:
    got = interpret(case.status, case.headers, case.body)
    assert got.kind is case.kind
    assert got.result == case.result
    assert got.message == case.message


def test_long_messages_are_cut() -> None:
    got = interpret(500, {}, b"x" * 10_000)
    assert got.message is not None
    assert len(got.message) == 4000
    assert got.message.endswith("…")


def test_transport_failures_name_the_cause() -> None:
    assert timed_out("http://f/t", 2.5).message == "timed out after 2.5 s waiting for http://f/t"
    got = connection_error("http://127.0.0.1:9/t", ConnectionRefusedError(111, "Connect refused"))
    assert got.kind is Kind.RETRY
    assert got.message is not None
    assert "http://127.0.0.1:9/t" in got.message
    assert "ConnectionRefusedError" in got.message


def test_non_utf8_error_bodies_are_decoded_with_replacement() -> None:
    got = interpret(500, {}, b"caf\xe9 \xff")
    assert got.message == "HTTP 500 Internal Server Error: caf\ufffd \ufffd"


@pytest.mark.parametrize(
    ("status", "headers", "body", "unreachable"),
    [
        (502, {"content-type": "text/html"}, b"<html>Bad Gateway</html>", True),
        (503, {}, b"no healthy upstream", True),
        (504, {}, b"", True),
        (503, JSON, b'{"error": "db down"}', False),  # the function's own answer
        (503, JSON, b'{"message": "busy"}', False),
        (502, {"x-job-error": "true"}, b"", False),
        (500, {}, b"<html>oops</html>", False),
        (200, {}, b"", False),
    ],
)
def test_gateway_errors_are_unreachable(
    status: int, headers: dict[str, str], body: bytes, unreachable: bool
) -> None:
    assert interpret(status, headers, body).unreachable is unreachable


def test_refused_connections_and_oversized_replies() -> None:
    refused = connection_error("http://f/t", ConnectionRefusedError(111, "x"), unreachable=True)
    assert (refused.kind, refused.unreachable) == (Kind.RETRY, True)
    big = too_large("http://f/t", 1024)
    assert big.kind is Kind.RETRY
    assert big.message == (
        "the reply of http://f/t is larger than 1024 bytes (JOBS_MAX_REPLY_BYTES); it was not read"
    )
