"""Sending callbacks (``sdk/README.md``, "Callbacks"): one shared client, a timeout,
bounded retries.

A callback is retried on a connection error, a timeout, a 5xx or a 429, with exponential
backoff, up to :attr:`CallbackPolicy.attempts` tries; any other answer is final (a 409 means
this worker no longer holds the job, so trying again cannot help).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass

import httpx

from jobfn import protocol

log = logging.getLogger("jobfn.callback")

_client_override: ContextVar[httpx.AsyncClient | None] = ContextVar(
    "jobfn_callback_client", default=None
)
"""A client that replaces the function's own for callbacks sent in this context
(:mod:`jobfn.testing` captures callbacks this way)."""


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """How callbacks are sent.

    ``timeout`` bounds each attempt (seconds); ``attempts`` is the total number of tries;
    the wait before try *n* + 1 is ``backoff * 2**(n - 1)`` seconds, at most ``max_backoff``,
    scaled by a random factor between 0.5 and 1 so that many functions do not retry in step.
    """

    timeout: float = 10.0
    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"CallbackPolicy.attempts must be at least 1 (got {self.attempts})")
        if self.timeout <= 0:
            raise ValueError(f"CallbackPolicy.timeout must be positive (got {self.timeout})")


def backoff_delay(policy: CallbackPolicy, tries_done: int, jitter: float = 1.0) -> float:
    """Seconds to wait after ``tries_done`` failed tries (``jitter`` in [0.5, 1])."""
    return float(min(policy.max_backoff, policy.backoff * 2 ** (tries_done - 1)) * jitter)


def is_retryable_status(status: int) -> bool:
    """Whether a callback answered with ``status`` is worth sending again."""
    return status >= 500 or status == 429


@dataclass(slots=True)
class CallbackTarget:
    """Where and for which job a callback goes."""

    url: str
    """The callback endpoint (``X-Callback-Url`` with an empty path made ``/callback``)."""
    worker_id: str
    job_id: str
    database_id: str | None = None
    attempt: str = ""
    """The attempt the job was dispatched for (``X-Job-Attempt``), ``""`` when unknown."""

    def envelope(self, body: bytes, *, error: bool) -> protocol.Envelope:
        """What the callback's signature covers (purpose ``callback``, this URL, attempt)."""
        return protocol.Envelope(
            protocol.PURPOSE_CALLBACK,
            self.worker_id,
            self.job_id,
            self.attempt,
            self.database_id or "",
            self.url,
            "true" if error else "",
            body,
        )


class CallbackSender:
    """Sends callbacks through one shared :class:`httpx.AsyncClient`, opened on first use."""

    def __init__(self, policy: CallbackPolicy | None = None) -> None:
        self.policy = policy or CallbackPolicy()
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _shared_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=self.policy.timeout)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the shared client (it reopens if a callback is sent later)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    async def send(
        self,
        target: CallbackTarget,
        body: bytes,
        *,
        error: bool,
        signer: protocol.Signer | None,
        attempts: int | None = None,
    ) -> bool:
        """POST ``body`` to ``target``; whether the callback server accepted it (2xx).

        Signed (scheme v2, purpose ``callback``) when there is a ``signer``, afresh for each
        try. Never raises for delivery problems: they are retried, then logged.
        """
        envelope = target.envelope(body, error=error) if signer is not None else None
        client = _client_override.get() or self._shared_client()
        tries = attempts or self.policy.attempts
        problem = ""
        for tried in range(1, tries + 1):
            signature = (
                signer.sign(envelope, int(time.time()), every_secret=True)
                if signer is not None and envelope is not None
                else None
            )
            headers = protocol.callback_headers(
                worker_id=target.worker_id,
                job_id=target.job_id,
                database_id=target.database_id,
                error=error,
                attempt=target.attempt,
                signature=signature,
            )
            raw_headers = [
                (name.encode(), value.encode("utf-8", "surrogateescape"))
                for name, value in headers.items()
            ]
            try:
                response = await client.post(
                    target.url, content=body, headers=raw_headers, timeout=self.policy.timeout
                )
            except (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                problem = f"cannot be sent: {type(exc).__name__}: {exc}"
                break  # the same request again cannot fare better
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if not is_retryable_status(response.status_code):
                    break
            if tried < tries:
                await asyncio.sleep(backoff_delay(self.policy, tried, random.uniform(0.5, 1.0)))
        log.error(
            "callback to %s for job %s not delivered: %s",
            target.url,
            target.job_id,
            problem,
            extra={"action": "callback", "job_id": target.job_id, "outcome": "undelivered"},
        )
        return False


@dataclass(frozen=True, slots=True)
class CallbackChannel:
    """Where one job's reports go: the sender, the job's callback target and the signer."""

    sender: CallbackSender
    target: CallbackTarget
    signer: protocol.Signer | None

    async def send(self, body: bytes, *, error: bool, attempts: int | None = None) -> bool:
        """:meth:`CallbackSender.send` of ``body`` to this job's target."""
        return await self.sender.send(
            self.target, body, error=error, signer=self.signer, attempts=attempts
        )
