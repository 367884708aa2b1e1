"""``LISTEN "jobs:insert"`` on a dedicated connection, and a check that notifications arrive.

One listener per service: the worker and the scheduler both :meth:`Listener.subscribe` to it
(one LISTEN connection). Wake-ups: every notification on ``jobs:insert`` calls every
subscriber; so does every (re)connect, to catch up on anything missed while disconnected.
The worker also polls, so a lost notification only delays a job by the poll interval.

Detecting that notifications stopped arriving (for example behind a transaction-pooling
PgBouncer, where LISTEN "works" but nothing is delivered): every ``probe_interval`` seconds
the listener sends ``NOTIFY "jobs:probe"`` with a token of its own from *another* connection
(the pool) and expects it back on the LISTEN connection within ``probe_timeout`` seconds. When
it does not come, that is logged once (``action: notifications_lost``) and the worker keeps
working by polling; when probes arrive again it is logged once more
(``notifications_restored``). The ``jobs_notifications_ok`` gauge follows the same state.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

import psycopg

from jobservice.logs import event
from jobservice.queries import Queries
from jobservice.retry import DB_ERRORS, Backoff

log = logging.getLogger("jobservice.listener")

INSERT_CHANNEL = "jobs:insert"
PROBE_CHANNEL = "jobs:probe"
SCHEDULED_CHANNEL = "scheduled_jobs:insert"
"""New or changed schedules (the scheduler subscribes to it)."""


class Listener:
    """Keeps a LISTEN connection open (reconnecting with backoff) and probes it."""

    def __init__(
        self,
        conninfo: str,
        queries: Queries,
        *,
        worker_id: str,
        on_wake: Callable[[], None] | None = None,
        send_probe: Callable[[str], Awaitable[None]],
        poll_interval: float,
        probe_interval: float = 30.0,
        probe_timeout: float = 5.0,
        on_health: Callable[[bool], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.queries = queries
        self.worker_id = worker_id
        self._subscribers: dict[str, list[Callable[[], None]]] = {
            INSERT_CHANNEL: [] if on_wake is None else [on_wake],
            SCHEDULED_CHANNEL: [],
        }
        self.send_probe = send_probe
        self.poll_interval = poll_interval
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.on_health = on_health
        self.healthy: bool | None = None
        """None until the first probe settles; then whether notifications arrive."""
        self.listening = asyncio.Event()
        self._seq = itertools.count(1)
        self._token: str | None = None
        self._probe_sent_at: float | None = None
        self._next_probe_at = 0.0

    def subscribe(self, on_wake: Callable[[], None], channel: str = INSERT_CHANNEL) -> None:
        """Call ``on_wake`` on every notification of ``channel`` (``jobs:insert`` or
        ``scheduled_jobs:insert``) and every (re)connect."""
        self._subscribers[channel].append(on_wake)

    def on_wake(self) -> None:
        """Wake every subscriber of every channel (after a (re)connect)."""
        for wakes in self._subscribers.values():
            for wake in wakes:
                wake()

    async def run(self) -> None:
        """Listen until cancelled; never raises on database errors."""
        try:
            await self._run()
        finally:
            self.listening.clear()

    async def _run(self) -> None:
        backoff = Backoff()
        failing = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except DB_ERRORS as exc:
                if not failing:
                    event(log, logging.WARNING, "listen_failed", f"cannot LISTEN: {exc}")
                failing = True
                await asyncio.sleep(backoff.next())
                continue
            try:
                async with conn:
                    await conn.execute(self.queries.listen)
                    self.listening.set()
                    if failing:
                        event(log, logging.INFO, "listen_restored", "listening again")
                    failing = False
                    backoff.reset()
                    self.on_wake()
                    self._next_probe_at = 0.0
                    self._probe_sent_at = None
                    await self._receive(conn)
            except DB_ERRORS as exc:
                self.listening.clear()
                event(log, logging.WARNING, "listen_lost", f"LISTEN connection lost: {exc}")
                failing = True
                await asyncio.sleep(backoff.next())

    async def _receive(self, conn: psycopg.AsyncConnection[object]) -> None:
        tick = min(1.0, self.probe_timeout)
        while True:
            await self._maybe_probe()
            async for note in conn.notifies(timeout=tick):
                if note.channel == PROBE_CHANNEL:
                    if note.payload == self._token:
                        self._probe_arrived()
                    continue
                for wake in self._subscribers.get(note.channel, ()):
                    wake()
            self._check_probe()

    async def _maybe_probe(self) -> None:
        now = time.monotonic()
        if self._probe_sent_at is not None or now < self._next_probe_at:
            return
        self._token = f"{self.worker_id}:{next(self._seq)}"
        self._next_probe_at = now + self.probe_interval
        try:
            await self.send_probe(self._token)
        except (psycopg.Error, OSError) as exc:
            event(log, logging.DEBUG, "probe_failed", f"could not send probe: {exc}")
            return
        self._probe_sent_at = time.monotonic()

    def _probe_arrived(self) -> None:
        self._probe_sent_at = None
        if self.healthy is False:
            event(log, logging.INFO, "notifications_restored", "notifications arrive again")
        self._set_health(True)

    def _check_probe(self) -> None:
        sent = self._probe_sent_at
        if sent is None or time.monotonic() - sent < self.probe_timeout:
            return
        self._probe_sent_at = None
        if self.healthy is not False:
            event(
                log,
                logging.WARNING,
                "notifications_lost",
                "notifications are not arriving (a transaction-pooling proxy?); "
                f"polling every {self.poll_interval:g} s instead",
                worker_id=self.worker_id,
            )
        self._set_health(False)

    def _set_health(self, healthy: bool) -> None:
        self.healthy = healthy
        if self.on_health is not None:
            self.on_health(healthy)
