"""The worker's verdict on one attempt: what a function's reply means for its job (pure).

| reply | verdict |
|---|---|
| ``X-Job-Error: true`` (any case) | failed attempt; message = body ``error``/``message``/text |
| status ≥ 400 | failed attempt; message = the function's own message plus the status |
| 202 | the function calls back; the job waits for it until the callback deadline |
| other 2xx | completed; a JSON body is the job's result (see :func:`result_of`) |
| 2xx declared JSON that does not parse | failed attempt (retryable): never a completion |
| other statuses (1xx, 3xx) | failed attempt naming the unexpected status |
| reply larger than the limit | failed attempt saying so (the rest is not read) |
| timeout / connection error | failed attempt naming the cause |

Replies that are not UTF-8 are decoded with replacement characters. A failed attempt is
``unreachable`` when the function never got the request: connection refused or name not
resolved, or a 502/503/504 without ``X-Job-Error`` whose body is not a JSON object with
``error``/``message`` (a gateway's page, not the function's answer).

A failed attempt is retried with backoff unless the function marks it permanent
(``X-Job-Retry: false`` or body ``"retry": false``), which fails the job for good at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus

from jobfn import protocol
from jobfn.types import Outcome

MAX_MESSAGE = 4000
"""Longest error message kept (longer ones are cut, with an ellipsis)."""
DEFAULT_MAX_REPLY_BYTES = 1024 * 1024
"""Largest reply read by default (``JOBS_MAX_REPLY_BYTES``)."""
_GATEWAY_STATUSES = frozenset({502, 503, 504})


class Kind(Enum):
    """The four ways a dispatch can end."""

    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"
    CALLBACK = "callback"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The worker's verdict on one attempt (the SDK's ``jobfn`` reply types are another thing).

    ``result`` is JSON text (``COMPLETED`` only); ``message`` the error (``RETRY``/``FAILED``).
    ``unreachable`` marks a ``RETRY`` where the function never got the request (connection
    refused or reset before it was sent, or a gateway's 502/503/504 that did not come from the
    function): such an attempt is not the function's fault and does not count.
    """

    kind: Kind
    result: str | None = None
    message: str | None = None
    unreachable: bool = False

    @property
    def retryable(self) -> bool:
        """False when the failure is permanent."""
        return self.kind is not Kind.FAILED


COMPLETED_EMPTY = Verdict(Kind.COMPLETED)
AWAIT_CALLBACK = Verdict(Kind.CALLBACK)
_FAST_OK = frozenset({b'{"complete":true}', b'{"complete": true}'})


def completed(result: str | None = None) -> Verdict:
    """A completed job with ``result`` (JSON text) or none."""
    return Verdict(Kind.COMPLETED, result=result) if result is not None else COMPLETED_EMPTY


def failure(message: str, *, permanent: bool = False, unreachable: bool = False) -> Verdict:
    """A failed attempt (``permanent``: fail the job for good; ``unreachable``: the function
    never got the request)."""
    return Verdict(
        Kind.FAILED if permanent else Kind.RETRY,
        message=_cut(message),
        unreachable=unreachable and not permanent,
    )


def _cut(message: str) -> str:
    message = message.replace("\x00", "").strip() or "unknown error"
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _is_false(value: object) -> bool:
    if value is False:
        return True
    return isinstance(value, str) and value.strip().lower() in {"false", "0", "no"}


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return json.dumps(value, ensure_ascii=False)


def _error_message(document: object, body: bytes) -> str | None:
    """The function's own message: body ``error``, else ``message``, else its text."""
    if isinstance(document, dict):
        for key in ("error", "message", "detail"):
            text = _text(document.get(key))
            if text is not None:
                return text
    text = body.decode("utf-8", "replace").strip()
    return text or None


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def interpret(
    status: int, headers: Mapping[str, str], body: bytes, *, content_type: str | None = None
) -> Verdict:
    """The outcome of a reply ``status``/``headers``/``body``.

    ``headers`` is looked up with lower-case names (a case-insensitive mapping works too).

    ``content_type`` overrides ``headers["content-type"]``; a body is read as JSON when it is
    declared JSON or looks like a JSON object/array.
    """
    job_error = headers.get("x-job-error", "").strip().lower() == "true"
    if 200 <= status < 300 and not job_error:
        if status == 202:
            return AWAIT_CALLBACK
        if not body or body in _FAST_OK:
            return COMPLETED_EMPTY
        declared = content_type or headers.get("content-type")
        document, ok = _json(body, declared)
        if not ok and _declares_json(declared):
            text = body[:200].decode("utf-8", "replace")
            return failure(
                f"{_status_text(status)} declared JSON but the body is not JSON: {text!r}"
            )
        return completed(result_of(document, body) if ok else None)

    document, _ = _json(body, content_type or headers.get("content-type"))
    permanent = _is_false(headers.get("x-job-retry")) or (
        isinstance(document, dict) and _is_false(document.get("retry"))
    )
    own = _error_message(document, body)
    if status >= 400:
        message = f"{_status_text(status)}: {own}" if own else _status_text(status)
    elif job_error:
        message = own or "the function reported an error (X-Job-Error) without a message"
    else:
        message = f"unexpected reply {_status_text(status)}" + (f": {own}" if own else "")
    gateway = (
        status in _GATEWAY_STATUSES
        and not job_error
        and not (isinstance(document, dict) and ("error" in document or "message" in document))
    )
    return failure(message, permanent=permanent, unreachable=gateway)


_COMPLETE_SIZE = len(protocol.reply_body(Outcome(200)))
_ACCEPTED_SIZE = len(protocol.reply_body(Outcome(202)))


def of_outcome(outcome: Outcome, where: str, limit: int) -> Verdict:
    """The verdict on a ``jobfn`` function's :class:`~jobfn.types.Outcome` (an in-process
    function run without HTTP): the same as :func:`interpret` gives on the reply the function
    would send for it (:func:`jobfn.protocol.reply_body`, :func:`~jobfn.protocol.reply_headers`),
    a reply over ``limit`` bytes included (:func:`too_large`, ``where`` naming the function).
    The common replies (completed without a result, accepted) are not encoded at all."""
    status = outcome.status
    if status == 200 and outcome.result_json is None and limit >= _COMPLETE_SIZE:
        return COMPLETED_EMPTY
    if status == 202 and limit >= _ACCEPTED_SIZE:
        return AWAIT_CALLBACK
    body = protocol.reply_body(outcome)
    if len(body) > limit:
        return too_large(where, limit)
    headers = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in protocol.reply_headers(outcome, body)
    }
    return interpret(status, headers, body)


def result_of(document: object, body: bytes) -> str | None:
    """The job's result (JSON text) from a successful JSON reply ``document``.

    A ``jobfn`` reply ``{"complete": true, "result": R}`` gives ``R``; a reply
    ``{"complete": true, ...}`` without ``result`` gives its other keys (the reference function's
    ``{"complete": true, "dryRun": true}`` gives ``{"dryRun": true}``), or no result when there
    are none; any other JSON body is the result as it is.
    """
    if isinstance(document, dict) and document.get("complete") is True:
        if "result" in document:
            result = document["result"]
            return None if result is None else json.dumps(result, separators=(",", ":"))
        rest = {key: value for key, value in document.items() if key != "complete"}
        return json.dumps(rest, separators=(",", ":")) if rest else None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:  # JSON in UTF-16/32: stored as UTF-8 text
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _declares_json(content_type: str | None) -> bool:
    return content_type is not None and "json" in content_type.lower()


def _json(body: bytes, content_type: str | None) -> tuple[object, bool]:
    """``(document, True)`` when ``body`` is JSON, else ``(None, False)``."""
    if not body:
        return None, False
    declared = content_type is not None and "json" in content_type.lower()
    if not declared and body.lstrip()[:1] not in (b"{", b"["):
        return None, False
    try:
        return json.loads(body, parse_constant=_not_json), True
    except ValueError:
        return None, False


def _not_json(name: str) -> object:
    """NaN and Infinity are not JSON (PostgreSQL refuses them): the body is not a result."""
    raise ValueError(f"{name} is not JSON")


def timed_out(url: str, seconds: float) -> Verdict:
    """A request that got no reply within ``seconds``."""
    return failure(f"timed out after {seconds:g} s waiting for {url}")


def connection_error(url: str, exc: BaseException, *, unreachable: bool = False) -> Verdict:
    """A request that failed before a reply (refused, reset, DNS, ...); ``unreachable`` when
    it was not sent at all."""
    detail = str(exc) or type(exc).__name__
    return failure(
        f"request to {url} failed: {type(exc).__name__}: {detail}", unreachable=unreachable
    )


def too_large(where: str, limit: int) -> Verdict:
    """A reply over ``limit`` bytes (after decompression): not read, the attempt failed."""
    return failure(
        f"the reply of {where} is larger than {limit} bytes (JOBS_MAX_REPLY_BYTES); it was not read"
    )
