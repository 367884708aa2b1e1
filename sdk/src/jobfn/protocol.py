"""The wire protocol between worker, function and callback server (pure, no I/O).

Header names, the ``X-Job-Signature`` scheme and callback-URL normalisation live here so that
the SDK, the worker and the callback server agree by construction.

Signature: ``X-Job-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
``HMAC-SHA256(secret, "<t>.<job id>.<raw body>")``;
a signature whose ``t`` is over :data:`SIGNATURE_TOLERANCE_SECONDS` from now is stale.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

HEADER_WORKER_ID = "x-worker-id"
HEADER_JOB_ID = "x-job-id"
HEADER_DATABASE_ID = "x-database-id"
HEADER_CALLBACK_URL = "x-callback-url"
HEADER_ACTOR_ID = "x-actor-id"
HEADER_TASK = "x-task-identifier"
HEADER_ATTEMPT = "x-job-attempt"
HEADER_MAX_ATTEMPTS = "x-job-max-attempts"
HEADER_COMPLETION = "x-job-completion"
HEADER_SIGNATURE = "x-job-signature"
HEADER_JOB_ERROR = "x-job-error"
HEADER_RETRY = "x-job-retry"
HEADER_TRACEPARENT = "traceparent"

COMPLETION_REPLY = "reply"
"""Value of ``X-Job-Completion`` meaning: the worker settles the job from the HTTP reply."""

SIGNATURE_TOLERANCE_SECONDS = 300


def signature_payload(timestamp: int, job_id: str, body: bytes) -> bytes:
    """The bytes that are signed: ``b"<t>.<job id>.<raw body>"``."""
    return f"{timestamp}.{job_id}.".encode() + body


def sign(secret: str, job_id: str, body: bytes, timestamp: int) -> str:
    """The ``X-Job-Signature`` header value for ``body`` of job ``job_id`` at ``timestamp``."""
    digest = hmac.new(
        secret.encode(), signature_payload(timestamp, job_id, body), hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(
    secret: str,
    header: str | None,
    job_id: str,
    body: bytes,
    *,
    now: float,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Whether ``header`` is a valid, fresh signature of ``body`` for job ``job_id``.

    Any ``v1=`` entry may match (so a secret can be rotated by sending two).
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, job_id, body, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def callback_endpoint(url: str) -> str:
    """Where a callback is POSTed: a URL whose path is empty or ``/`` means ``/callback``."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/callback")
    return urlunsplit(parts)
