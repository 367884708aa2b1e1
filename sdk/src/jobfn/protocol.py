"""The wire protocol between worker, function and callback server (pure, no I/O).

Header names, the ``X-Job-Signature`` scheme and callback-URL normalisation live here so that
the SDK, the worker and the callback server agree by construction.

Signature, scheme v2: ``X-Job-Signature: t=<unix seconds>,v2=<hex>[,v2=<hex>]``, each
``<hex>`` the HMAC-SHA256, keyed by a secret, of ::

    v2\n<purpose>\n<t>\n<worker id>\n<job id>\n<attempt>\n<database id>\n<callback url>
    \n<X-Job-Error value or empty>\n<raw body>

(:meth:`Envelope.message`). ``purpose`` is ``dispatch`` (worker → function) or ``callback``
(function → callback server), so one cannot stand for the other; the worker, job, attempt,
tenant, callback URL and error flag are all covered, so none can be changed under a valid
signature, and a callback signed for one attempt does not verify for another. A verifier
accepts ``t`` within :data:`SIGNATURE_TOLERANCE_SECONDS` of its clock and a match against any
of its secrets (current and previous: rotation without downtime); see ``docs/security.md``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable, Sequence
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
"""A signature whose ``t`` is further than this from the verifier's clock is refused."""

PURPOSE_DISPATCH = "dispatch"
"""Signature purpose of a dispatch (worker → function)."""
PURPOSE_CALLBACK = "callback"
"""Signature purpose of a callback (function → callback server)."""

_MAX_SIGNATURES = 8
"""At most this many ``v2=`` entries are looked at (one per secret during a rotation)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """Everything a signature covers besides its timestamp (scheme v2).

    ``attempt`` is the attempt number as sent (``""`` when unknown); ``job_error`` the
    ``X-Job-Error`` header value as sent (``""`` when absent); ``callback_url`` the
    ``X-Callback-Url`` of a dispatch, or for a callback the URL it is POSTed to
    (:func:`callback_endpoint` of the dispatch's ``X-Callback-Url``).
    """

    purpose: str
    worker_id: str
    job_id: str
    attempt: str
    database_id: str
    callback_url: str
    job_error: str
    body: bytes

    def message(self, timestamp: int) -> bytes:
        """The signed bytes: ``v2\\n<purpose>\\n<t>\\n<worker>\\n<job>\\n<attempt>\\n<database>
        \\n<callback url>\\n<X-Job-Error>\\n<raw body>`` (text as UTF-8)."""
        return signed_message(
            self.purpose,
            timestamp,
            worker_id=self.worker_id,
            job_id=self.job_id,
            attempt=self.attempt,
            database_id=self.database_id,
            callback_url=self.callback_url,
            job_error=self.job_error,
            body=self.body,
        )


def signed_message(
    purpose: str,
    timestamp: int,
    *,
    worker_id: str,
    job_id: str,
    attempt: str,
    database_id: str,
    callback_url: str,
    job_error: str,
    body: bytes,
) -> bytes:
    """What a v2 signature covers (:meth:`Envelope.message` of these values)."""
    head = (
        f"v2\n{purpose}\n{timestamp}\n{worker_id}\n{job_id}\n{attempt}\n"
        f"{database_id}\n{callback_url}\n{job_error}\n"
    )
    return head.encode("utf-8", "surrogateescape") + body


class Signer:
    """Signs and verifies with one or more secrets (the current one first, then the previous).

    The keyed HMAC state is prepared once per secret, so a signature costs one copy and one
    update. Signing sends one ``v2=`` per secret; verifying accepts a match with any of them.
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str | bytes]) -> None:
        keys = [s.encode() if isinstance(s, str) else bytes(s) for s in secrets if s]
        if not keys:
            raise ValueError("Signer needs at least one non-empty secret")
        self._keys = [hmac.new(key, digestmod=hashlib.sha256) for key in keys]

    def _digest(self, key: hmac.HMAC, message: bytes) -> str:
        mac = key.copy()
        mac.update(message)
        return mac.hexdigest()

    def sign(self, envelope: Envelope, timestamp: int, *, every_secret: bool = False) -> str:
        """The ``X-Job-Signature`` value ``t=<timestamp>,v2=<hex>`` (one ``v2`` per secret
        with ``every_secret``, for a rotation in which verifiers may know only the new one)."""
        return self.sign_message(envelope.message(timestamp), timestamp, every_secret=every_secret)

    def sign_message(self, message: bytes, timestamp: int, *, every_secret: bool = False) -> str:
        """:meth:`sign` of an envelope whose :meth:`Envelope.message` is ``message``."""
        keys = self._keys
        if len(keys) == 1 or not every_secret:
            mac = keys[0].copy()
            mac.update(message)
            return f"t={timestamp},v2={mac.hexdigest()}"
        return f"t={timestamp}," + ",".join(f"v2={self._digest(k, message)}" for k in keys)

    def verify(
        self,
        header: str | None,
        envelope: Envelope,
        *,
        now: float,
        tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    ) -> bool:
        """Whether ``header`` is a fresh v2 signature of ``envelope`` by one of the secrets.

        Fresh: ``t`` within ``tolerance`` seconds of ``now`` either way. Digests are compared
        in constant time; entries other than ``t`` and ``v2`` are ignored.
        """
        parsed = parse_signature(header)
        if parsed is None:
            return False
        timestamp, candidates = parsed
        if abs(now - timestamp) > tolerance:
            return False
        message = envelope.message(timestamp)
        matched = False
        for key in self._keys:
            expected = self._digest(key, message)
            for candidate in candidates:
                matched |= hmac.compare_digest(expected, candidate)
        return matched


def parse_signature(header: str | None) -> tuple[int, list[str]] | None:
    """``(t, [v2 digests])`` of an ``X-Job-Signature`` value, ``None`` when malformed."""
    if not header or len(header) > 2048:
        return None
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                return None
            if len(value) > 12:
                return None
            timestamp = int(value)
        elif (
            key == "v2"
            and len(candidates) < _MAX_SIGNATURES
            and len(value) == 64
            and value.isascii()
        ):
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        return None
    return timestamp, candidates


def sign(
    secrets: str | Sequence[str], envelope: Envelope, timestamp: int, *, every_secret: bool = False
) -> str:
    """``Signer(secrets).sign(envelope, timestamp)`` (see :class:`Signer`)."""
    return Signer([secrets] if isinstance(secrets, str) else secrets).sign(
        envelope, timestamp, every_secret=every_secret
    )


def verify(
    secrets: str | Sequence[str],
    header: str | None,
    envelope: Envelope,
    *,
    now: float,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """``Signer(secrets).verify(header, envelope, now=now)`` (see :class:`Signer`)."""
    return Signer([secrets] if isinstance(secrets, str) else secrets).verify(
        header, envelope, now=now, tolerance=tolerance
    )


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
    raw_attempt: str = ""
    """``X-Job-Attempt`` as sent (``""`` when absent): what a signature covers."""
    job_error: str = ""
    """``X-Job-Error`` as sent (``""`` when absent): what a signature covers."""
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
_JOB_ERROR = HEADER_JOB_ERROR.encode()
_TRACEPARENT = HEADER_TRACEPARENT.encode()
_CONTENT_LENGTH = b"content-length"
_REPLY = COMPLETION_REPLY.encode()


def _text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    # UTF-8 with surrogate escapes: any bytes round-trip, so a signature over the text is a
    # signature over the bytes that were sent.
    return raw.decode("utf-8", "surrogateescape").strip() or None


def _number(raw: bytes | None) -> int | None:
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


def parse_job_headers(headers: Iterable[tuple[bytes, bytes]]) -> JobHeaders:
    """Read the job headers (``sdk/README.md``, "The HTTP protocol") from ASGI ``headers``
    (lower-case names).

    Empty values count as absent; a malformed number (attempt, max attempts, content length)
    is ignored rather than failing the job. A repeated header: the last one counts.
    """
    get = dict(headers).get
    completion = get(_COMPLETION)
    attempt = get(_ATTEMPT)
    return JobHeaders(
        worker_id=_text(get(_WORKER_ID)),
        job_id=_text(get(_JOB_ID)),
        database_id=_text(get(_DATABASE_ID)),
        callback_url=_text(get(_CALLBACK_URL)),
        actor_id=_text(get(_ACTOR_ID)),
        task=_text(get(_TASK)),
        attempt=_number(attempt),
        max_attempts=_number(get(_MAX_ATTEMPTS)),
        raw_attempt=_text(attempt) or "",
        job_error=_text(get(_JOB_ERROR)) or "",
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
    """The JSON body of the reply for ``outcome`` (the table of ``sdk/README.md``, "The HTTP
    protocol").

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
    """The callback body for a finished job (``sdk/README.md``, "Callbacks").

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


def dispatch_envelope(job: JobHeaders, body: bytes) -> Envelope:
    """What the signature of a dispatch with these headers must cover (purpose ``dispatch``)."""
    return Envelope(
        PURPOSE_DISPATCH,
        job.worker_id or "",
        job.job_id or "",
        job.raw_attempt,
        job.database_id or "",
        job.callback_url or "",
        job.job_error,
        body,
    )


def callback_headers(
    *,
    worker_id: str,
    job_id: str,
    database_id: str | None,
    error: bool,
    attempt: str | None = None,
    signature: str | None = None,
) -> dict[str, str]:
    """Headers of a callback: the job ids and attempt, ``X-Job-Error: true`` on error, the
    signature."""
    headers = {
        "Content-Type": "application/json",
        "X-Worker-Id": worker_id,
        "X-Job-Id": job_id,
    }
    if database_id:
        headers["X-Database-Id"] = database_id
    if attempt:
        headers["X-Job-Attempt"] = attempt
    if error:
        headers["X-Job-Error"] = "true"
    if signature is not None:
        headers["X-Job-Signature"] = signature
    return headers


# -- dispatches (worker -> function) ----------------------------------------------------------


def dispatch_headers(
    *,
    worker_id: str,
    callback_url: str,
    job_id: str,
    task: str,
    attempt: int | str,
    max_attempts: int | str,
    body: bytes,
    database_id: str | None = None,
    actor_id: str | None = None,
    completion_reply: bool = True,
    traceparent: str | None = None,
    signer: Signer | None = None,
    timestamp: int = 0,
    every_secret: bool = True,
    content_length: bool = False,
) -> list[tuple[str, str]]:
    """The headers of a dispatch of one job attempt (``sdk/README.md``, "The HTTP
    protocol"): the one place they are built, for the HTTP and the in-process transports and
    for :mod:`jobfn.testing`.

    Order: ``Content-Type``, ``X-Worker-Id``, ``X-Job-Id``, ``X-Database-Id`` (when given),
    ``X-Callback-Url``, ``X-Actor-Id`` (when given), ``X-Task-Identifier``, ``X-Job-Attempt``,
    ``X-Job-Max-Attempts``, ``X-Job-Completion: reply`` (with ``completion_reply``),
    ``traceparent`` (when given), ``Content-Length`` (with ``content_length``: the length of
    ``body``) and last ``X-Job-Signature`` when ``signer`` is given: the v2 signature (purpose
    ``dispatch``) of ``body`` and these headers at ``timestamp`` (unix seconds), one ``v2=``
    per secret with ``every_secret``. Pure: the caller supplies the clock and trace id.
    Use :func:`asgi_headers` for the ASGI form.
    """
    attempt = str(attempt)
    pairs = [
        ("Content-Type", "application/json"),
        ("X-Worker-Id", worker_id),
        ("X-Job-Id", job_id),
    ]
    if database_id is not None:
        pairs.append(("X-Database-Id", database_id))
    pairs.append(("X-Callback-Url", callback_url))
    if actor_id is not None:
        pairs.append(("X-Actor-Id", actor_id))
    pairs += [
        ("X-Task-Identifier", task),
        ("X-Job-Attempt", attempt),
        ("X-Job-Max-Attempts", str(max_attempts)),
    ]
    if completion_reply:
        pairs.append(("X-Job-Completion", COMPLETION_REPLY))
    if traceparent is not None:
        pairs.append(("traceparent", traceparent))
    if content_length:
        pairs.append(("Content-Length", str(len(body))))
    if signer is not None:
        envelope = Envelope(
            PURPOSE_DISPATCH, worker_id, job_id, attempt, database_id or "", callback_url, "", body
        )
        pairs.append(
            ("X-Job-Signature", signer.sign(envelope, timestamp, every_secret=every_secret))
        )
    return pairs


def asgi_headers(pairs: Iterable[tuple[str, str]]) -> list[Header]:
    """``pairs`` as ASGI headers: lower-case names, values as UTF-8 (surrogates escaped)."""
    return [
        (name.lower().encode("latin-1"), value.encode("utf-8", "surrogateescape"))
        for name, value in pairs
    ]


# Placeholders of the per-job values in an :class:`AsgiDispatchHeaders` template, in the
# order of its ``values`` (the 8th value, the body's length, is found by its header name).
_SLOT_VALUES = tuple(f"\x00slot-{n}\x00" for n in range(7))
_SLOT_LENGTH = 7


def _templated_pairs(
    *, worker_id: str, callback_url: str, completion_reply: bool, slots: Sequence[str]
) -> dict[tuple[bool, bool], list[tuple[str, str]]]:
    """:func:`dispatch_headers` of one worker for each ``(with database id, with actor id)``,
    the per-job values being the placeholders ``slots`` (job id, database id, actor id, task,
    attempt, max attempts, traceparent, in that order); ``Content-Length`` is included."""
    job_id, database_id, actor_id, task, attempt, max_attempts, trace = slots[:7]
    return {
        (with_database, with_actor): dispatch_headers(
            worker_id=worker_id,
            callback_url=callback_url,
            job_id=job_id,
            task=task,
            attempt=attempt,
            max_attempts=max_attempts,
            body=b"",
            database_id=database_id if with_database else None,
            actor_id=actor_id if with_actor else None,
            completion_reply=completion_reply,
            traceparent=trace,
            content_length=True,
        )
        for with_database in (False, True)
        for with_actor in (False, True)
    }


class AsgiDispatchHeaders:
    """The unsigned ASGI dispatch headers of one worker, the constant pairs built once.

    ``headers(job_id=..., ...)`` equals ``asgi_headers(dispatch_headers(worker_id=...,
    callback_url=..., ..., content_length=True))`` for the same arguments (no signer): the
    templates are built by :func:`dispatch_headers` itself, with placeholders where the per-job
    values go, so that function stays the one place the headers are defined. Only the per-job
    values are encoded for each job (the worker's in-process transport calls this per job).
    """

    __slots__ = ("_templates",)

    def __init__(self, *, worker_id: str, callback_url: str, completion_reply: bool = True) -> None:
        self._templates: dict[tuple[bool, bool], tuple[list[Header], tuple[tuple[int, int], ...]]]
        self._templates = {}
        templated = _templated_pairs(
            worker_id=worker_id,
            callback_url=callback_url,
            completion_reply=completion_reply,
            slots=_SLOT_VALUES,
        )
        for key, pairs in templated.items():
            slots = tuple(
                (index, _SLOT_LENGTH if name == "Content-Length" else _SLOT_VALUES.index(value))
                for index, (name, value) in enumerate(pairs)
                if name == "Content-Length" or value in _SLOT_VALUES
            )
            self._templates[key] = (asgi_headers(pairs), slots)

    def headers(
        self,
        *,
        job_id: str,
        task: str,
        attempt: int | str,
        max_attempts: int | str,
        body: bytes,
        database_id: str | None,
        actor_id: str | None,
        traceparent: str,
    ) -> list[Header]:
        """The ASGI headers of a dispatch of one job attempt (see the class docstring)."""
        template, slots = self._templates[database_id is not None, actor_id is not None]
        values = (
            job_id,
            database_id,
            actor_id,
            task,
            str(attempt),
            str(max_attempts),
            traceparent,
            str(len(body)),
        )
        headers = template.copy()
        for index, field in slots:
            value = values[field]
            assert value is not None
            headers[index] = (headers[index][0], value.encode("utf-8", "surrogateescape"))
        return headers


_SLOT_NAMES = (
    "job_id",
    "database_id",
    "actor_id",
    "task",
    "attempt",
    "max_attempts",
    "traceparent",
    "content_length",
)
_LINE_BREAKS = ("\r", "\n")


class HttpDispatchHead:
    """The HTTP/1.1 request head of every dispatch of one worker to one URL, built per job
    from templates.

    ``head(job_id=..., ...)`` is ``POST <target> HTTP/1.1``, ``Host``, then the headers of
    ``dispatch_headers(worker_id=..., callback_url=..., ..., content_length=True,
    signer=signer, timestamp=timestamp)`` in that order (one ``v2=`` per secret), then the
    blank line: the bytes to send before the body. The templates are built by
    :func:`dispatch_headers` itself, with placeholders where the per-job values go, so that
    function stays the one place the headers are defined; each job only formats its own values
    in and signs. A per-job value with a line break raises :class:`ValueError` (it would end
    the header and start another).
    """

    __slots__ = ("_callback_url", "_signer", "_templates", "_worker_id")

    def __init__(
        self,
        *,
        target: str,
        host: str,
        worker_id: str,
        callback_url: str,
        signer: Signer | None,
        completion_reply: bool = True,
    ) -> None:
        for value in (target, host, worker_id, callback_url):
            if any(c in value for c in _LINE_BREAKS):
                raise ValueError(f"a line break in a dispatch's constant part: {value!r}")
        self._signer = signer
        self._worker_id = worker_id
        self._callback_url = callback_url
        self._templates: dict[tuple[bool, bool], str] = {}
        slots = tuple(f"\x00slot-{name}\x00" for name in _SLOT_NAMES)
        templated = _templated_pairs(
            worker_id=worker_id,
            callback_url=callback_url,
            completion_reply=completion_reply,
            slots=slots,
        )
        for key, pairs in templated.items():
            lines = [f"POST {target} HTTP/1.1\r\n", f"Host: {host}\r\n"]
            lines += [
                f"{name}: {slots[-1] if name == 'Content-Length' else value}\r\n"
                for name, value in pairs
            ]
            # A str.format template: braces of the constant text doubled, each placeholder
            # replaced by the index of its value in head()'s arguments.
            template = "".join(lines).replace("{", "{{").replace("}", "}}")
            for index, slot in enumerate(slots):
                template = template.replace(slot, f"{{{index}}}")
            self._templates[key] = template

    def head(
        self,
        *,
        job_id: str,
        task: str,
        attempt: int,
        max_attempts: int,
        body: bytes,
        database_id: str | None,
        actor_id: str | None,
        traceparent: str,
        timestamp: int,
    ) -> bytes:
        """The request head (request line, headers, blank line) of one dispatch."""
        for value in (task, database_id, actor_id):
            if value is not None and ("\n" in value or "\r" in value):
                raise ValueError(f"a line break in a dispatch header value: {value!r}")
        attempt_text = str(attempt)
        text = self._templates[database_id is not None, actor_id is not None].format(
            job_id,
            database_id,
            actor_id,
            task,
            attempt_text,
            max_attempts,
            traceparent,
            len(body),
        )
        signer = self._signer
        if signer is None:
            return (text + "\r\n").encode("utf-8", "surrogateescape")
        message = signed_message(
            PURPOSE_DISPATCH,
            timestamp,
            worker_id=self._worker_id,
            job_id=job_id,
            attempt=attempt_text,
            database_id=database_id or "",
            callback_url=self._callback_url,
            job_error="",
            body=body,
        )
        signature = signer.sign_message(message, timestamp, every_secret=True)
        return f"{text}X-Job-Signature: {signature}\r\n\r\n".encode("utf-8", "surrogateescape")
