"""Serving a job function with uvicorn: ``PORT``, JSON logs, a graceful SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from types import FrameType

import uvicorn

from jobfn import json_logs as jobfn_logging
from jobfn.env import Env
from jobfn.function import JobFunction
from jobfn.http_protocol import JobHttpProtocol

DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"  # a container's function must be reachable from outside


def port_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``PORT`` (default 8080); raises :class:`ConfigError` naming it when malformed."""
    return Env(environ).integer("PORT", DEFAULT_PORT, minimum=1, maximum=65535)


def config_for(
    fn: JobFunction,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> uvicorn.Config:
    """The uvicorn configuration :func:`serve` uses (ASGI 3, lifespan on, graceful drain).

    The app is the function's :class:`~jobfn.job_app.JobApp` itself; uvicorn runs it with
    :class:`~jobfn.http_protocol.JobHttpProtocol` (its ``httptools`` protocol, with a lean
    path for job requests and each reply in one write) and without the proxy-headers
    middleware (a job function reads neither the client address nor the scheme).
    """
    return uvicorn.Config(
        fn.asgi,
        http=JobHttpProtocol,
        proxy_headers=False,
        host=host,
        port=port_from_env() if port is None else port,
        interface="asgi3",
        lifespan="on",
        log_config=None,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=int(fn.shutdown_timeout) + 1,
    )


def serve(
    fn: JobFunction,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve ``fn`` until SIGTERM or SIGINT, then finish in-flight jobs and return.

    ``port`` defaults to ``PORT`` (else 8080). Logs go to stderr as JSON lines. On SIGTERM the
    server stops accepting connections, waits for in-flight requests and background jobs (at
    most ``fn.shutdown_timeout`` seconds) and returns normally, so the process exits 0.
    The function's ``on_startup`` checks run first: a :class:`ConfigError` is raised before
    anything listens.
    """
    if not isinstance(fn, JobFunction):
        raise TypeError(f"serve() needs a JobFunction made by @job_function (got {fn!r})")
    jobfn_logging.configure(log_level.upper())
    fn.start()
    server = uvicorn.Server(
        config_for(fn, host=host, port=port, log_level=log_level, access_log=access_log)
    )
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        # uvicorn re-raises the signal that stopped it once it is done; handled here, that
        # ends the process normally (exit 0) instead of killing it by the default action.
        received.append(signum)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        logging.getLogger("jobfn").info(
            "stopped by %s", signal.Signals(received[0]).name, extra={"action": "shutdown"}
        )
