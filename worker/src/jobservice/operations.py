"""The operator side of the job service: HTTP API, live events, dashboard, history pruning.

:class:`Operations` mounts the API (:mod:`jobservice.api`) and the dashboard
(:mod:`jobservice.dashboard`) on the callback server's aiohttp application, and runs the event
hub's LISTEN connection (:mod:`jobservice.events`) and the history pruning
(:mod:`jobservice.retention`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from jobservice import retention
from jobservice.admin import queries
from jobservice.api import Api, default_database_id
from jobservice.config import Settings
from jobservice.dashboard import Dashboard
from jobservice.events import EventHub


class Operations:
    """API, dashboard and events over the service's pool (see the module docstring)."""

    def __init__(self, settings: Settings, pool: AsyncConnectionPool[Any]) -> None:
        self.settings = settings
        self.pool = pool
        self.queries = queries(settings.schema)
        self.hub = EventHub(settings.conninfo, pool, self.queries["jobs_by_ids"])
        self.api = Api(
            pool,
            self.queries,
            self.hub,
            token=settings.api_token,
            default_database_id=default_database_id(os.environ),
        )
        self.dashboard = Dashboard(self.api)

    def mount(self, app: web.Application) -> None:
        """Add the API and dashboard routes to ``app`` (before it starts)."""
        app.add_routes(self.api.routes())
        app.add_routes(self.dashboard.routes())

    def tasks(self, stop: asyncio.Event, *, serving: bool) -> list[asyncio.Task[None]]:
        """Start the background work: history pruning, and the event hub when ``serving``."""
        started = [
            asyncio.create_task(
                retention.prune_forever(
                    self.pool, self.queries, self.settings.history_retention, stop
                )
            )
        ]
        if serving:
            started.append(asyncio.create_task(self.hub.run(stop)))
        return started

    def close(self) -> None:
        """End the open event streams (so the HTTP server can stop at once)."""
        self.hub.close()
