"""A circuit breaker per function route (pure: the clock and the randomness are passed in).

A dispatch whose function could not be reached (``Outcome.unreachable``: connection refused or
reset before the request was sent, DNS failure, a gateway's 502/503/504 without the function's
reply) opens the breaker of its route, the URL origin (``scheme://host:port``). While open, the
worker claims no jobs of the tasks seen on that route and releases those it holds, without
using their attempts. After the open period the breaker is *half-open*: one job of the route is
claimed as a probe (the others stay in the queue); a reply from the function closes the breaker
and the route's jobs are claimed again, another unreachable one opens it again for twice as long
(``base * 2**(n-1)``, at most ``cap``, times a jitter factor in [0.5, 1]).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def route_key(url: str) -> str:
    """The breaker key of a function URL: its origin (``http://fns:8080``)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url


@dataclass(slots=True)
class _State:
    failures: int = 0
    """Consecutive openings (the exponent of the backoff)."""
    open_until: float = 0.0
    probing: bool = False
    """A probe job is in flight (half-open)."""
    tasks: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Opened:
    """The breaker of ``key`` (re)opened for ``seconds``."""

    key: str
    seconds: float
    failures: int


class Breakers:
    """The breakers of every route one worker dispatches to."""

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._states: dict[str, _State] = {}

    def unreachable(self, key: str, task: str, now: float) -> Opened | None:
        """A dispatch to ``key`` (for ``task``) did not reach the function at ``now``.

        Returns :class:`Opened` when this opened (or re-opened) the breaker; ``None`` when it was
        already open (a request sent before it opened).
        """
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State()
        state.tasks.add(task)
        if state.open_until > now:
            return None
        state.probing = False
        state.failures += 1
        seconds = min(self.cap, self.base * 2 ** (state.failures - 1))
        seconds *= 0.5 + 0.5 * self.jitter()
        state.open_until = now + seconds
        return Opened(key, seconds, state.failures)

    def reached(self, key: str) -> bool:
        """A reply came from the function at ``key``; True when that closed its breaker."""
        state = self._states.get(key)
        if state is None or state.failures == 0:
            return False
        state.failures = 0
        state.open_until = 0.0
        state.probing = False
        return True

    def is_open(self, key: str, now: float) -> bool:
        """Whether jobs for ``key`` are held back at ``now``."""
        state = self._states.get(key)
        return state is not None and state.open_until > now

    def remaining(self, key: str, now: float) -> float:
        """Seconds until the breaker of ``key`` half-opens (0 when it is not open)."""
        state = self._states.get(key)
        return 0.0 if state is None else max(0.0, state.open_until - now)

    def blocked_tasks(self) -> set[str]:
        """The tasks seen on routes whose breaker is open or half-open: left out of claims
        (a half-open route gets its jobs through :meth:`probe_due` only)."""
        blocked: set[str] = set()
        for state in self._states.values():
            if state.failures > 0:
                blocked |= state.tasks
        return blocked

    def probe_due(self, now: float) -> dict[str, set[str]]:
        """Half-open routes without a probe in flight: ``{key: tasks}``."""
        return {
            key: set(state.tasks)
            for key, state in self._states.items()
            if state.failures > 0 and state.open_until <= now and not state.probing
        }

    def probing(self, key: str) -> None:
        """A probe job for ``key`` was claimed; no other until its reply."""
        state = self._states.get(key)
        if state is not None:
            state.probing = True

    def probe_lost(self, key: str) -> None:
        """The probe of ``key`` ended without a reply (e.g. released): another may be sent."""
        state = self._states.get(key)
        if state is not None:
            state.probing = False

    def open_keys(self) -> list[str]:
        """Routes whose breaker has not closed since it last opened (open or half-open)."""
        return [key for key, state in self._states.items() if state.failures > 0]
