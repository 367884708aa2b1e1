"""History retention: the service prunes finished jobs older than ``JOBS_HISTORY_RETENTION``.

Every replica prunes (the DELETE is idempotent), at start and then every ``interval`` seconds
(an hour, or a tenth of the retention when that is shorter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from jobservice.logs import event

log = logging.getLogger("jobservice.retention")


def prune_interval(retention: float) -> float:
    """Seconds between prunes for a retention of ``retention`` seconds."""
    return max(1.0, min(3600.0, retention / 10))


async def prune_once(
    pool: AsyncConnectionPool[Any], queries: Mapping[str, sql.Composed], retention: float
) -> int:
    """Delete history rows finished more than ``retention`` seconds ago; the count."""
    async with pool.connection() as conn:
        cur = await conn.execute(queries["prune_history"], {"older_than": f"{retention} seconds"})
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def prune_forever(
    pool: AsyncConnectionPool[Any],
    queries: Mapping[str, sql.Composed],
    retention: float,
    stop: asyncio.Event,
) -> None:
    """Prune now and every :func:`prune_interval` until ``stop`` (errors are logged)."""
    while not stop.is_set():
        try:
            pruned = await prune_once(pool, queries, retention)
            if pruned:
                event(log, logging.INFO, "history_pruned", f"pruned {pruned} finished jobs")
        except (psycopg.Error, TimeoutError) as exc:
            event(log, logging.WARNING, "history_prune_failed", f"pruning history: {exc}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), prune_interval(retention))
