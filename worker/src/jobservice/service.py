"""The job service: worker, callback server, scheduler and metrics in one process.

Each part can be switched off (``JOBS_WORKER_ENABLED``, ``JOBS_CALLBACK_SERVER_ENABLED``,
``JOBS_SCHEDULER_ENABLED``). They share one PostgreSQL connection pool; the worker also keeps
one dedicated LISTEN connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from jobservice import apiauth, inprocess
from jobservice.callback_server import CallbackServer
from jobservice.config import Settings
from jobservice.listener import Listener
from jobservice.liveness import Liveness
from jobservice.logs import event
from jobservice.metrics import CONTENT_TYPE, Metrics
from jobservice.operations import Operations
from jobservice.queries import queries_for
from jobservice.routing import Router
from jobservice.store_postgres import PostgresStore
from jobservice.transport import Asgi, Dispatch
from jobservice.worker import Worker

log = logging.getLogger("jobservice.service")


def make_pool(settings: Settings) -> AsyncConnectionPool[Any]:
    """The service's (unopened) connection pool: autocommit connections."""
    return AsyncConnectionPool(
        settings.conninfo,
        min_size=1,
        max_size=settings.db_pool_size,
        kwargs={"autocommit": True},
        open=False,
        timeout=10.0,
        name="jobs",
    )


def make_router(settings: Settings, apps: dict[str, tuple[str, Asgi]]) -> Router:
    """The task router of ``settings`` with the in-process ``apps``."""
    dispatch = Dispatch(
        worker_id=settings.worker_id,
        callback_url=settings.callback_url,
        concurrency=settings.concurrency,
        timeout_for=settings.timeout_for,
        signing_secret=settings.signing_secrets or None,
        max_reply_bytes=settings.max_reply_bytes,
    )
    return Router(
        dispatch=dispatch,
        gateway_map=settings.gateway_map,
        template=settings.gateway_template,
        base_url=settings.gateway_url,
        inprocess=apps,
        support_any=settings.support_any,
        supported=settings.supported,
    )


class Service:
    """Runs the enabled parts until ``stop`` is set (see :meth:`run`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        apps: dict[str, tuple[str, Asgi]] | None = None,
        announce: Callable[[str], None] = print,
    ) -> None:
        apiauth.check_settings(settings)
        self.settings = settings
        self.announce = announce
        self.metrics = Metrics()
        self.pool = make_pool(settings)
        self.store = PostgresStore(
            self.pool,
            settings.schema,
            worker_id=settings.worker_id,
            metrics=self.metrics,
            job_expiry=settings.job_expiry,
            conninfo=settings.conninfo,
            vacuum_every=settings.vacuum_every,
        )
        """Where jobs live: the worker and the callback server write outcomes through it."""
        self.apps = apps if apps is not None else inprocess.load_all(settings.inprocess)
        self.callback_server: CallbackServer | None = None
        self.operations = Operations(settings, self.pool)
        self.worker: Worker | None = None
        self.listener: Listener | None = None
        """The one LISTEN connection of the service (worker and scheduler wake-ups)."""
        self.callback_port: int | None = None
        self.metrics_port: int | None = None
        self.started = asyncio.Event()
        """Set once every enabled part listens/runs."""

    async def run(self, stop: asyncio.Event) -> None:
        """Start the enabled parts, wait for ``stop``, shut everything down cleanly."""
        s = self.settings
        queries = queries_for(s.schema)
        await self.pool.open(wait=False)
        lifespans = [inprocess.Lifespan(app) for _, app in self.apps.values()]
        metrics_runner: web.AppRunner | None = None
        tasks: list[asyncio.Task[None]] = []
        listening: asyncio.Task[None] | None = None
        try:
            for lifespan in lifespans:
                await lifespan.startup()
            if s.callback_server_enabled:
                self.callback_server = CallbackServer(
                    self.store,
                    signing_secret=s.signing_secrets or None,
                    callback_url=s.callback_url,
                    insecure=s.insecure_callbacks,
                )
                self.operations.mount(self.callback_server.app)
                self.callback_port = await self.callback_server.start(
                    s.callback_bind, s.callback_port
                )
                self.announce(
                    f"callback server listening on http://{s.callback_bind}:{self.callback_port}"
                    " (POST /callback, GET /health/liveness, /health/readiness, /metrics,"
                    " /api/jobs, /api/events, /dashboard)"
                )
            tasks += self.operations.tasks(stop, serving=s.callback_server_enabled)
            if s.metrics_port is not None:
                metrics_runner, self.metrics_port = await self._serve_metrics(s.metrics_port)
                self.announce(f"metrics on http://{s.callback_bind}:{self.metrics_port}/metrics")
            tasks.append(
                asyncio.create_task(
                    self.metrics.poll_queue(self.pool, queries, s.metrics_interval, stop)
                )
            )
            if s.worker_enabled:
                self.worker = Worker(
                    s,
                    self.store,
                    make_router(s, self.apps),
                    listener=self._listener(queries),
                    liveness=Liveness(
                        self.store,
                        heartbeat_interval=s.heartbeat_interval,
                        dead_after=s.dead_worker_after,
                        info={"concurrency": s.concurrency},
                        metrics=self.metrics,
                    ),
                )
                tasks.append(asyncio.create_task(self.worker.run(stop)))
                where = ", ".join(f"{t} in process" for t in self.apps) or "none in process"
                self.announce(
                    f"worker {s.worker_id}: concurrency {s.concurrency}, tasks "
                    f"{'any' if s.support_any else ','.join(s.supported)}, functions at "
                    f"{s.gateway_template or s.gateway_url} ({where}); "
                    f"callbacks to {s.callback_url}"
                )
            if s.scheduler_enabled:
                scheduler = self._scheduler()
                if scheduler is not None:
                    tasks.append(asyncio.create_task(self._run_scheduler(scheduler, stop)))
                    self.announce(f"scheduler {s.worker_id}: default time zone {s.cron_tz}")
            if self.listener is not None:  # runs until cancelled, below
                listening = asyncio.create_task(self.listener.run(), name="jobs-listener")
            self.started.set()
            await stop.wait()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if listening is not None:
                tasks.append(listening)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.operations.close()
            if self.callback_server is not None:
                await self.callback_server.stop()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            for lifespan in lifespans:
                await lifespan.shutdown()
            await self.pool.close()

    def _listener(self, queries: Any) -> Listener:
        """The service's listener (created once, run by :meth:`run`)."""
        if self.listener is None:
            metrics = self.metrics
            self.listener = Listener(
                self.settings.conninfo,
                queries,
                worker_id=self.settings.worker_id,
                send_probe=self.store.notify_probe,
                poll_interval=self.settings.poll_interval,
                on_health=lambda ok: metrics.notifications_ok.set(1 if ok else 0),
            )
        return self.listener

    def _scheduler(self) -> Any:
        try:
            from jobservice.scheduler import Scheduler
        except ImportError as exc:  # pragma: no cover - shipped together
            event(log, logging.WARNING, "scheduler_unavailable", f"no scheduler: {exc}")
            return None
        s = self.settings
        return Scheduler(
            self.pool,
            schema=s.schema,
            scheduler_id=s.worker_id,
            default_tz=s.cron_tz,
            poll_interval=s.scheduler_poll_interval,
            task_identifiers=None if s.support_any else list(s.supported),
            listener=self._listener(queries_for(s.schema)),
        )

    async def _run_scheduler(self, scheduler: Any, stop: asyncio.Event) -> None:
        """Run the scheduler; if it crashes, log and restart it (the service keeps running)."""
        while not stop.is_set():
            try:
                await scheduler.run(stop)
                return
            except Exception as exc:
                event(log, logging.ERROR, "scheduler_crashed", f"scheduler failed: {exc!r}")
                await asyncio.sleep(1.0)

    async def _serve_metrics(self, port: int) -> tuple[web.AppRunner, int]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        sock = socket.create_server((self.settings.callback_bind, port))
        await web.SockSite(runner, sock).start()
        return runner, int(sock.getsockname()[1])
