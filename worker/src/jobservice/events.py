"""Live job events: one LISTEN connection, fanned out to Server-Sent Events subscribers.

Migration 0004 sends one ``NOTIFY "jobs:events"`` per statement that inserts, updates or
deletes jobs, with the ids it touched (``U:1,2,3``; ``U:*`` when more than 200 rows changed).
The :class:`EventHub` listens on a connection of its own, gathers the ids of the notifications
that arrive within :attr:`EventHub.coalesce` seconds, reads those jobs' states in one query and
puts one ready-to-send SSE message per job into each interested subscriber's bounded queue. A
subscriber whose queue is full (a slow client) is dropped, never waited for. With nobody
subscribed, notifications are ignored: the hub costs nothing while no one watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from jobservice.logs import event
from jobservice.retry import Backoff

log = logging.getLogger("jobservice.events")

CHANNEL = "jobs:events"
MAX_LOOKUP = 500
"""More ids than this pending at once: subscribers get one ``refresh`` instead."""


def parse_notification(payload: str) -> list[int] | None:
    """The job ids of a ``jobs:events`` payload; ``None`` means "many: refresh everything"."""
    _, _, ids = payload.partition(":")
    if ids == "*":
        return None
    return [int(part) for part in ids.split(",") if part.isdecimal()]


def _default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def message(kind: str, data: Mapping[str, Any] | None) -> bytes:
    """One SSE message: ``event: <kind>`` and the JSON ``data`` line."""
    body = json.dumps(data if data is not None else {}, default=_default, separators=(",", ":"))
    return f"event: {kind}\ndata: {body}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One SSE client: every job (``job_id`` None) or one job's events."""

    job_id: int | None
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(256))
    dropped: bool = False

    def offer(self, data: bytes) -> bool:
        """Queue ``data``; a full queue drops the subscriber (returns False)."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped = True
            return False
        return True


class EventHub:
    """Listens for ``jobs:events`` and fans job states out to :class:`Subscriber` queues."""

    def __init__(
        self,
        conninfo: str,
        pool: AsyncConnectionPool[Any],
        lookup: sql.Composed,
        *,
        coalesce: float = 0.05,
        queue_size: int = 256,
    ) -> None:
        self.conninfo = conninfo
        self.pool = pool
        self.lookup = lookup
        self.coalesce = coalesce
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()
        self.listening = asyncio.Event()
        """Set while the LISTEN connection is up."""
        self.dropped = 0
        """Subscribers dropped for being too slow."""
        self._pending: set[int] = set()
        self._pending_all = False
        self._flush: asyncio.Task[None] | None = None

    def subscribe(self, job_id: int | None = None) -> Subscriber:
        """A new subscriber (all jobs, or one job)."""
        sub = Subscriber(job_id, asyncio.Queue(self.queue_size))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget ``sub``."""
        self.subscribers.discard(sub)

    def close(self) -> None:
        """End every subscription (their streams finish)."""
        for sub in list(self.subscribers):
            sub.dropped = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(b"")
        self.subscribers.clear()

    def publish(self, data: bytes, job_id: int | None) -> None:
        """Offer ``data`` to the subscribers of ``job_id`` (``None``: to every subscriber)."""
        for sub in list(self.subscribers):
            wanted = job_id is None or sub.job_id is None or sub.job_id == job_id
            if wanted and not sub.offer(data):
                self.subscribers.discard(sub)
                self.dropped += 1
                event(log, logging.INFO, "sse_client_dropped", "slow event client dropped")

    def notified(self, payload: str) -> None:
        """Note the ids of one notification and schedule a flush."""
        if not self.subscribers:
            return
        ids = parse_notification(payload)
        if ids is None or len(self._pending) + len(ids) > MAX_LOOKUP:
            self._pending_all = True
        else:
            self._pending.update(ids)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.coalesce)
        ids, everything = self._pending, self._pending_all
        self._pending, self._pending_all = set(), False
        if everything:
            self.publish(message("refresh", {}), None)
            ids = {s.job_id for s in self.subscribers if s.job_id is not None}
        if ids:
            await self._send_states(sorted(ids), broadcast=not everything)

    async def _send_states(self, ids: list[int], *, broadcast: bool) -> None:
        try:
            async with self.pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(self.lookup, {"ids": ids})
                rows = await cur.fetchall()
        except (psycopg.Error, TimeoutError) as exc:
            event(log, logging.WARNING, "events_lookup_failed", f"job events lookup: {exc}")
            self.publish(message("refresh", {}), None)
            return
        for row in rows:
            data = message("job", row)
            if broadcast:
                self.publish(data, int(row["id"]))
            else:
                for sub in [s for s in self.subscribers if s.job_id == row["id"]]:
                    if not sub.offer(data):
                        self.subscribers.discard(sub)

    async def run(self, stop: asyncio.Event) -> None:
        """LISTEN until ``stop``; reconnect with backoff, then tell subscribers to refresh."""
        backoff = Backoff(first=0.2)
        reconnecting = False
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    if reconnecting:
                        self.publish(message("refresh", {}), None)
                    self.listening.set()
                    backoff.reset()
                    reconnecting = False
                    while not stop.is_set():
                        async for note in conn.notifies(timeout=0.5):
                            self.notified(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                event(log, logging.WARNING, "events_listen_lost", f"job events: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())
                reconnecting = True
        self.listening.clear()
        self.close()
