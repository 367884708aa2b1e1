"""The HTTP request head the worker sends is the one ``dispatch_headers`` defines."""

from __future__ import annotations

import pytest

from jobfn import protocol

SIGNER = protocol.Signer(["current-secret-0123456789abcdef", "previous-secret-0123456789abcdef"])


@pytest.mark.parametrize(
    ("database_id", "actor_id", "signer"),
    [
        (None, None, SIGNER),
        ("5b720132-17d5-424d-9bcb-ee7b17c13d43", None, SIGNER),
        (None, "actor-9", None),
        ("db-é", "actor \udcff", SIGNER),
    ],
)
def test_the_head_is_the_request_line_host_and_the_dispatch_headers_in_order(
    database_id: str | None, actor_id: str | None, signer: protocol.Signer | None
) -> None:
    head = protocol.HttpDispatchHead(
        target="/fn?x=1",
        host="fn.local:8080",
        worker_id="worker-1",
        callback_url="http://callback:12345/",
        signer=signer,
    )
    body = b'{"to":"a@b.c"}'
    got = head.head(
        job_id="42",
        task="send-email",
        attempt=3,
        max_attempts=25,
        body=body,
        database_id=database_id,
        actor_id=actor_id,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        timestamp=1_700_000_000,
    )
    expected = protocol.dispatch_headers(
        worker_id="worker-1",
        callback_url="http://callback:12345/",
        job_id="42",
        task="send-email",
        attempt=3,
        max_attempts=25,
        body=body,
        database_id=database_id,
        actor_id=actor_id,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        signer=signer,
        timestamp=1_700_000_000,
        content_length=True,
    )
    assert got.endswith(b"\r\n\r\n")
    lines = got[:-4].decode("utf-8", "surrogateescape").split("\r\n")
    assert lines[:2] == ["POST /fn?x=1 HTTP/1.1", "Host: fn.local:8080"]
    assert [tuple(line.split(": ", 1)) for line in lines[2:]] == expected
    if signer is not None:
        parsed = protocol.parse_job_headers(protocol.asgi_headers(expected))
        envelope = protocol.dispatch_envelope(parsed, body)
        for secret in ("current-secret-0123456789abcdef", "previous-secret-0123456789abcdef"):
            assert protocol.verify(secret, parsed.signature, envelope, now=1_700_000_000)


def test_a_line_break_in_a_value_is_refused() -> None:
    head = protocol.HttpDispatchHead(
        target="/", host="fn", worker_id="w", callback_url="http://cb/", signer=None
    )
    with pytest.raises(ValueError, match="line break"):
        head.head(
            job_id="1",
            task="t",
            attempt=1,
            max_attempts=1,
            body=b"{}",
            database_id=None,
            actor_id="a\nX-Injected: 1",
            traceparent="tp",
            timestamp=0,
        )
    with pytest.raises(ValueError, match="line break"):
        protocol.HttpDispatchHead(
            target="/\r\nX: 1", host="fn", worker_id="w", callback_url="http://cb/", signer=None
        )
