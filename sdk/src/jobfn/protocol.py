"""The wire protocol between worker, function and callback server (pure, no I/O).

Header names, the ``X-Job-Signature`` scheme and callback-URL normalisation live here so that
the SDK, the worker and the callback server agree by construction.

Signature: ``X-Job-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
``HMAC-SHA256(secret, "<t>.<job id>.<raw body>")``;
a signature whose ``t`` is over :data:`SIGNATURE_TOLERANCE_SECONDS` from now is stale.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pydantic_core import to_json

from jobfn.types import Outcome

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


@functools.lru_cache(maxsize=256)
def callback_endpoint(url: str) -> str:
    """Where a callback is POSTed: a URL whose path is empty or ``/`` means ``/callback``."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/callback")
    return urlunsplit(parts)


# -- incoming job headers ---------------------------------------------------------------------


@dataclass(slots=True)
class JobHeaders:
    """The job facts a request carries (all ``None`` for a direct invocation)."""

    worker_id: str | None = None
    job_id: str | None = None
    database_id: str | None = None
    callback_url: str | None = None
    actor_id: str | None = None
    task: str | None = None
    attempt: int | None = None
    max_attempts: int | None = None
    completion_reply: bool = False
    """``X-Job-Completion: reply``: the worker settles the job from the reply."""
    signature: str | None = None
    traceparent: str | None = None
    content_length: int | None = None

    @property
    def wants_callback(self) -> bool:
        """Whether the request names where to report: callback URL, worker id and job id."""
        return bool(self.callback_url and self.worker_id and self.job_id)


_WORKER_ID = HEADER_WORKER_ID.encode()
_JOB_ID = HEADER_JOB_ID.encode()
_DATABASE_ID = HEADER_DATABASE_ID.encode()
_CALLBACK_URL = HEADER_CALLBACK_URL.encode()
_ACTOR_ID = HEADER_ACTOR_ID.encode()
_TASK = HEADER_TASK.encode()
_ATTEMPT = HEADER_ATTEMPT.encode()
_MAX_ATTEMPTS = HEADER_MAX_ATTEMPTS.encode()
_COMPLETION = HEADER_COMPLETION.encode()
_SIGNATURE = HEADER_SIGNATURE.encode()
_TRACEPARENT = HEADER_TRACEPARENT.encode()
_CONTENT_LENGTH = b"content-length"
_REPLY = COMPLETION_REPLY.encode()


def _text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    return raw.decode("latin-1").strip() or None


def _number(raw: bytes | None) -> int | None:
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def parse_job_headers(headers: Iterable[tuple[bytes, bytes]]) -> JobHeaders:
    """Read the job headers of contract section 2 from ASGI ``headers`` (lower-case names).

    Empty values count as absent; a malformed number (attempt, max attempts, content length)
    is ignored rather than failing the job. A repeated header: the last one counts.
    """
    get = dict(headers).get
    completion = get(_COMPLETION)
    return JobHeaders(
        worker_id=_text(get(_WORKER_ID)),
        job_id=_text(get(_JOB_ID)),
        database_id=_text(get(_DATABASE_ID)),
        callback_url=_text(get(_CALLBACK_URL)),
        actor_id=_text(get(_ACTOR_ID)),
        task=_text(get(_TASK)),
        attempt=_number(get(_ATTEMPT)),
        max_attempts=_number(get(_MAX_ATTEMPTS)),
        completion_reply=completion is not None and completion.strip().lower() == _REPLY,
        signature=_text(get(_SIGNATURE)),
        traceparent=_text(get(_TRACEPARENT)),
        content_length=_number(get(_CONTENT_LENGTH)),
    )


# -- replies (function -> worker) -------------------------------------------------------------

Header = tuple[bytes, bytes]

_JSON: Header = (b"content-type", b"application/json")
_ERROR: Header = (HEADER_JOB_ERROR.encode(), b"true")
_NO_RETRY: Header = (HEADER_RETRY.encode(), b"false")
_COMPLETE = b'{"complete":true}'


def reply_body(outcome: Outcome) -> bytes:
    """The JSON body of the reply for ``outcome`` (contract section 4).

    Success: ``{"complete": true, "result": ...}`` (no ``result`` when the handler returned
    ``None``); accepted (202): ``{"complete": false, "accepted": true}``; failure:
    ``{"error": message}`` plus ``"retry": false`` when permanent and ``"errors": [...]``
    for a payload that failed validation.
    """
    if outcome.status < 400:
        if outcome.status == 202:
            return b'{"complete":false,"accepted":true}'
        if outcome.result_json is None:
            return _COMPLETE
        return b'{"complete":true,"result":' + outcome.result_json + b"}"
    body: dict[str, object] = {"error": outcome.error or "unknown error"}
    if not outcome.retry:
        body["retry"] = False
    if outcome.errors is not None:
        body["errors"] = outcome.errors
    return to_json(body)


def reply_headers(outcome: Outcome, body: bytes) -> list[Header]:
    """The reply headers for ``outcome``: JSON content type and length, ``X-Job-Error: true``
    on failure, ``X-Job-Retry: false`` on a permanent failure."""
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    if outcome.status >= 400:
        headers.append(_ERROR)
        if not outcome.retry:
            headers.append(_NO_RETRY)
    return headers


# -- callbacks (function -> callback server) --------------------------------------------------


def callback_body(outcome: Outcome) -> bytes:
    """The callback body for a finished job (contract section 3).

    ``{"status": "success"}`` (plus ``"result"`` when there is one) or
    ``{"status": "error", "error": message}`` (plus ``"retry": false`` when permanent).
    """
    if outcome.status < 400:
        if outcome.result_json is None:
            return b'{"status":"success"}'
        return b'{"status":"success","result":' + outcome.result_json + b"}"
    body: dict[str, object] = {"status": "error", "error": outcome.error or "unknown error"}
    if not outcome.retry:
        body["retry"] = False
    return to_json(body)


def progress_body(percent: int, message: str | None) -> bytes:
    """A progress report: ``{"status": "progress", "progress": 0..100, "message": ...}``."""
    body: dict[str, object] = {"status": "progress", "progress": percent}
    if message is not None:
        body["message"] = message
    return to_json(body)


def callback_headers(
    *,
    worker_id: str,
    job_id: str,
    database_id: str | None,
    error: bool,
    signature: str | None = None,
) -> dict[str, str]:
    """Headers of a callback: the job ids, ``X-Job-Error: true`` on error, the signature."""
    headers = {
        "Content-Type": "application/json",
        "X-Worker-Id": worker_id,
        "X-Job-Id": job_id,
    }
    if database_id:
        headers["X-Database-Id"] = database_id
    if error:
        headers["X-Job-Error"] = "true"
    if signature is not None:
        headers["X-Job-Signature"] = signature
    return headers
