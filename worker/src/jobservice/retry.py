"""Retrying database work: the errors that mean "try again" and one exponential backoff.

Every loop that must survive a database outage (claiming, writing outcomes, LISTEN, the
scheduler, the event stream) waits :meth:`Backoff.next` seconds between attempts: 0.05 s,
doubling up to 5 s, back to 0.05 s after a success (:meth:`Backoff.reset`).
"""

from __future__ import annotations

import psycopg

CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
"""The database could not be reached or the connection broke: the statement may be retried."""

DB_ERRORS = (psycopg.Error, OSError)
"""Any error of a database statement (connection errors and refusals)."""


class Backoff:
    """Exponential delays between retries: ``first``, doubling, at most ``cap`` seconds."""

    __slots__ = ("cap", "delay", "first")

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        """The delay to wait now; the following one is twice as long (up to ``cap``)."""
        delay = self.delay
        self.delay = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        """An attempt succeeded: the next delay is ``first`` again."""
        self.delay = self.first
