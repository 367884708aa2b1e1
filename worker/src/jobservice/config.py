"""Environment → frozen :class:`Settings` for the job service.

Every variable the service reads is listed once in :data:`VARIABLES` (name, default, meaning);
the README's table is that list. Each default is written once, as the default of its
:class:`Settings` field: :data:`VARIABLES` shows it and :func:`load_settings` falls back to it.
Values are read with :class:`jobfn.env.Env`, the project's one environment reader.
Names the reference job service reads keep their meaning; new ones start with ``JOBS_``. A
malformed value raises :class:`ConfigError` whose message is one line naming the variable and
what it expects.
"""

from __future__ import annotations

import os
import re
import socket
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from jobfn import security
from jobfn.env import Env, EnvError
from jobfn.env import parse_bool as _parse_bool


class ConfigError(EnvError):
    """A variable is missing or malformed; ``str(error)`` is one line naming it
    (``VARIABLE: expected … (got …)``)."""


class Variable(NamedTuple):
    """One documented environment variable."""

    name: str
    default: str
    meaning: str


DEFAULT_CALLBACK_HOST = "jobs-callback"
"""``JOBS_CALLBACK_HOST`` when unset: the host of the default callback URL."""
DEFAULT_HISTORY_RETENTION = "7d"
"""``JOBS_HISTORY_RETENTION`` when unset (``Settings.history_retention`` is it in seconds)."""


_MODULE_ATTR = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Settings:
    """Everything the job service is configured with (see :data:`VARIABLES`)."""

    conninfo: str = ""
    schema: str = "app_jobs"
    worker_id: str = "worker-0000"
    support_any: bool = True
    supported: tuple[str, ...] = ()
    gateway_map: Mapping[str, str] = field(default_factory=dict)
    gateway_template: str | None = None
    gateway_url: str = "http://gateway:8080"
    inprocess: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 10
    task_concurrency: Mapping[str, int] = field(default_factory=dict)
    claim_batch: int = 500
    prefetch: int | None = None
    """``None``: sized from the measured job duration and claim time."""
    poll_interval: float = 1.0
    request_timeout: float = 300.0
    task_timeouts: Mapping[str, float] = field(default_factory=dict)
    callback_deadline: float = 900.0
    job_expiry: float = 14400.0
    heartbeat_interval: float = 10.0
    dead_worker_after: float = 45.0
    route_backoff_min: float = 0.5
    route_backoff_max: float = 30.0
    shutdown_grace: float = 25.0
    settle_batch: int = 500
    vacuum_every: int = 25_000
    settle_delay: float = 0.01
    signing_secret: str | None = None
    signing_secret_previous: str | None = None
    insecure_callbacks: bool = False
    """``JOBS_INSECURE_CALLBACKS``: unsigned callbacks are accepted (and no secret needed)."""
    max_reply_bytes: int = 1024 * 1024
    callback_port: int = 12345
    callback_bind: str = "0.0.0.0"
    callback_url: str = f"http://{DEFAULT_CALLBACK_HOST}:12345/callback"
    worker_enabled: bool = True
    callback_server_enabled: bool = True
    scheduler_enabled: bool = True
    cron_tz: str = "UTC"
    scheduler_poll_interval: float = 1.0
    metrics_port: int | None = None
    metrics_interval: float = 15.0
    db_pool_size: int = 6
    log_level: str = "INFO"
    api_token: str | None = None
    history_retention: float = 7 * 86400.0
    """Seconds finished jobs stay in ``job_history``."""

    @property
    def signing_secrets(self) -> tuple[str, ...]:
        """The current secret, then the previous one (rotation), as far as they are set."""
        return tuple(s for s in (self.signing_secret, self.signing_secret_previous) if s)

    def timeout_for(self, task: str) -> float:
        """The request timeout of ``task`` in seconds."""
        return self.task_timeouts.get(task, self.request_timeout)


def _shown(value: object) -> str:
    """A :class:`Settings` default as the variables table shows it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_D = Settings()
"""The defaults (one source: the :class:`Settings` field defaults)."""

VARIABLES: tuple[Variable, ...] = (
    Variable("DATABASE_URL", "(unset: libpq reads PG*)", "job database connection URL"),
    Variable("PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE", "libpq defaults", "job database"),
    Variable("JOBS_SCHEMA", _D.schema, "schema holding the jobs tables and functions"),
    Variable("HOSTNAME", "worker-<host>-<pid>", "worker id (X-Worker-Id, locked_by); ≥ 4 chars"),
    Variable("JOBS_WORKER_ID", "(unset)", "overrides HOSTNAME as the worker id"),
    Variable(
        "JOBS_SUPPORT_ANY", _shown(_D.support_any), "run every task; false → only JOBS_SUPPORTED"
    ),
    Variable("JOBS_SUPPORTED", "(empty)", "comma-separated task identifiers to run"),
    Variable(
        "INTERNAL_GATEWAY_DEVELOPMENT_MAP",
        "{}",
        'JSON {"task": "full URL"}; first routing rule, honoured in every environment',
    ),
    Variable(
        "JOBS_GATEWAY_URL_TEMPLATE",
        "(unset)",
        "URL template with {task} (task made DNS-safe), e.g. http://{task}.fns.svc",
    ),
    Variable(
        "INTERNAL_GATEWAY_URL",
        _D.gateway_url,
        "base URL: a job goes to base + '/' + task; a value with {task} is a template",
    ),
    Variable("KNATIVE_SERVICE_URL", "(unset)", "base URL used when INTERNAL_GATEWAY_URL is unset"),
    Variable(
        "JOBS_INPROCESS",
        "{}",
        'JSON {"task": "module:attr"}: run these tasks in the worker process (jobfn functions)',
    ),
    Variable(
        "JOBS_CONCURRENCY", _shown(_D.concurrency), "jobs run at once by this worker (all tasks)"
    ),
    Variable("JOBS_TASK_CONCURRENCY", "{}", 'JSON {"task": n}: at most n at once for that task'),
    Variable("JOBS_CLAIM_BATCH", _shown(_D.claim_batch), "most jobs claimed in one statement"),
    Variable(
        "JOBS_PREFETCH",
        "auto",
        "jobs claimed ahead of free slots (auto: 50 ms or two claims' time of work, ≤ 2 batches)",
    ),
    Variable(
        "JOBS_POLL_INTERVAL",
        _shown(_D.poll_interval),
        "seconds between polls when no notification wakes us",
    ),
    Variable(
        "JOBS_REQUEST_TIMEOUT", _shown(_D.request_timeout), "seconds a function may take to reply"
    ),
    Variable("JOBS_TASK_TIMEOUT", "{}", 'JSON {"task": seconds}: per-task request timeout'),
    Variable(
        "JOBS_CALLBACK_DEADLINE",
        _shown(_D.callback_deadline),
        "seconds a 202-answered job waits for its callback",
    ),
    Variable(
        "JOBS_JOB_EXPIRY",
        _shown(_D.job_expiry),
        "seconds after which a lock of an unknown worker expires",
    ),
    Variable(
        "JOBS_HEARTBEAT_INTERVAL",
        _shown(_D.heartbeat_interval),
        "seconds between worker heartbeats",
    ),
    Variable(
        "JOBS_DEAD_WORKER_AFTER",
        _shown(_D.dead_worker_after),
        "seconds without heartbeat before a worker is dead",
    ),
    Variable(
        "JOBS_ROUTE_BACKOFF_MIN",
        _shown(_D.route_backoff_min),
        "seconds a function route is left alone after it was first found unreachable",
    ),
    Variable(
        "JOBS_ROUTE_BACKOFF_MAX",
        _shown(_D.route_backoff_max),
        "most seconds an unreachable function route is left alone (doubling, with jitter)",
    ),
    Variable(
        "JOBS_SHUTDOWN_GRACE",
        _shown(_D.shutdown_grace),
        "seconds to finish in-flight jobs on SIGTERM/SIGINT",
    ),
    Variable(
        "JOBS_SETTLE_BATCH", _shown(_D.settle_batch), "outcomes written in one statement, at most"
    ),
    Variable(
        "JOBS_VACUUM_EVERY",
        _shown(_D.vacuum_every),
        "jobs settled between two VACUUMs of the jobs table by this worker (0: never)",
    ),
    Variable(
        "JOBS_SETTLE_DELAY_MS",
        _shown(_D.settle_delay * 1000),
        "most ms to gather outcomes before writing them (less when idle or a batch is full)",
    ),
    Variable(
        "JOBS_SIGNING_SECRET",
        "(required)",
        "HMAC secret (≥ 32 bytes): sign dispatches, check callbacks; or JOBS_SIGNING_SECRET_FILE",
    ),
    Variable(
        "JOBS_SIGNING_SECRET_PREVIOUS",
        "(unset)",
        "the secret being rotated out: still accepted on callbacks; or ..._PREVIOUS_FILE",
    ),
    Variable("JOBS_SIGNING_SECRET_FILE", "(unset)", "file holding JOBS_SIGNING_SECRET"),
    Variable(
        "JOBS_SIGNING_SECRET_PREVIOUS_FILE", "(unset)", "file holding JOBS_SIGNING_SECRET_PREVIOUS"
    ),
    Variable(
        "JOBS_INSECURE_CALLBACKS",
        _shown(_D.insecure_callbacks),
        "true: accept unsigned callbacks (reference Node functions), start without a secret",
    ),
    Variable(
        "JOBS_MAX_REPLY_BYTES",
        _shown(_D.max_reply_bytes),
        "largest function reply read (after decompression); larger → failed attempt",
    ),
    Variable("INTERNAL_JOBS_CALLBACK_PORT", _shown(_D.callback_port), "callback server port"),
    Variable("JOBS_CALLBACK_HOST", DEFAULT_CALLBACK_HOST, "host in the default callback URL"),
    Variable("JOBS_CALLBACK_BIND", _D.callback_bind, "interface the callback server listens on"),
    Variable(
        "INTERNAL_JOBS_CALLBACK_URL",
        "http://<JOBS_CALLBACK_HOST>:<port>/callback",
        "X-Callback-Url sent to functions",
    ),
    Variable("JOBS_WORKER_ENABLED", _shown(_D.worker_enabled), "run the worker"),
    Variable(
        "JOBS_CALLBACK_SERVER_ENABLED",
        _shown(_D.callback_server_enabled),
        "run the callback server",
    ),
    Variable("JOBS_SCHEDULER_ENABLED", _shown(_D.scheduler_enabled), "run the scheduler"),
    Variable("JOBS_CRON_TZ", _D.cron_tz, "time zone of schedules that name none"),
    Variable(
        "JOBS_SCHEDULER_POLL_INTERVAL",
        _shown(_D.scheduler_poll_interval),
        "seconds between scheduler passes",
    ),
    Variable("JOBS_METRICS_PORT", "(unset)", "own port for /metrics (always on the callback port)"),
    Variable(
        "JOBS_METRICS_INTERVAL",
        _shown(_D.metrics_interval),
        "seconds between queue depth/lag queries",
    ),
    Variable(
        "JOBS_DB_POOL_SIZE",
        _shown(_D.db_pool_size),
        "PostgreSQL connections of the pool (plus one LISTEN)",
    ),
    Variable(
        "JOBS_LOG_LEVEL", _D.log_level, "DEBUG logs every job; INFO logs failures and lifecycle"
    ),
    Variable(
        "JOBS_API_TOKEN",
        "(unset)",
        "bearer token (≥ 32 bytes) of the HTTP API and dashboard (required unless bound to "
        "loopback); or JOBS_API_TOKEN_FILE",
    ),
    Variable(
        "JOBS_HISTORY_RETENTION",
        DEFAULT_HISTORY_RETENTION,
        "finished jobs older than this are pruned",
    ),
)


def parse_bool(name: str, raw: str) -> bool:
    """``true/false, 1/0, yes/no, on/off`` (any case) → bool, else :class:`ConfigError`."""
    return _parse_bool(name, raw, error=ConfigError)


def _string_map(reader: Env, name: str, expected: str) -> dict[str, str]:
    raw = reader.json_object(name, expected)
    if not all(isinstance(v, str) and v for v in raw.values()):
        raise ConfigError(name, expected, reader.text(name))
    return {k: str(v) for k, v in raw.items()}


def _number_map(reader: Env, name: str, expected: str, *, integer: bool) -> dict[str, float | int]:
    raw = reader.json_object(name, expected)
    out: dict[str, float | int] = {}
    for key, value in raw.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        if integer:
            ok = ok and isinstance(value, int)
        if not ok:
            raise ConfigError(name, expected, reader.text(name))
        out[key] = value  # type: ignore[assignment]
    return out


def _retention(reader: Env) -> float:
    from jobservice.durations import EXPECTED, parse_duration

    raw = reader.text("JOBS_HISTORY_RETENTION") or DEFAULT_HISTORY_RETENTION
    delta = parse_duration(raw)
    if delta is None or delta.total_seconds() <= 0:
        raise ConfigError("JOBS_HISTORY_RETENTION", EXPECTED, raw)
    return delta.total_seconds()


def default_worker_id() -> str:
    """``worker-<host name>-<pid>``: unique per process when no HOSTNAME is given."""
    return f"worker-{socket.gethostname()}-{os.getpid()}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``env`` (default ``os.environ``).

    Raises :class:`ConfigError` (one line naming the variable) on a malformed value.
    """
    env = os.environ if env is None else env
    r = Env(env, error=ConfigError)

    worker_id = r.text("JOBS_WORKER_ID") or r.text("HOSTNAME") or default_worker_id()
    if len(worker_id) < 4:
        name = "JOBS_WORKER_ID" if r.text("JOBS_WORKER_ID") else "HOSTNAME"
        raise ConfigError(name, "a worker id of at least 4 characters", worker_id)

    supported = tuple(t.strip() for t in (r.text("JOBS_SUPPORTED") or "").split(",") if t.strip())
    gateway_map = _string_map(
        r, "INTERNAL_GATEWAY_DEVELOPMENT_MAP", 'a JSON object {"task": "URL"}'
    )
    inprocess = _string_map(r, "JOBS_INPROCESS", 'a JSON object {"task": "module:attr"}')
    for target in inprocess.values():
        if not _MODULE_ATTR.match(target):
            raise ConfigError("JOBS_INPROCESS", 'a JSON object {"task": "module:attr"}', target)

    template = r.text("JOBS_GATEWAY_URL_TEMPLATE")
    if template is not None and "{task}" not in template:
        raise ConfigError("JOBS_GATEWAY_URL_TEMPLATE", "a URL containing {task}", template)
    gateway_url = r.text("INTERNAL_GATEWAY_URL") or r.text("KNATIVE_SERVICE_URL") or _D.gateway_url

    concurrency = r.integer("JOBS_CONCURRENCY", _D.concurrency, maximum=10_000)
    task_concurrency = {
        k: int(v)
        for k, v in _number_map(
            r, "JOBS_TASK_CONCURRENCY", 'a JSON object {"task": positive integer}', integer=True
        ).items()
    }
    task_timeouts = {
        k: float(v)
        for k, v in _number_map(
            r, "JOBS_TASK_TIMEOUT", 'a JSON object {"task": seconds > 0}', integer=False
        ).items()
    }

    heartbeat = r.seconds("JOBS_HEARTBEAT_INTERVAL", _D.heartbeat_interval, minimum=0.05)
    dead_after = r.seconds("JOBS_DEAD_WORKER_AFTER", _D.dead_worker_after, minimum=0.1)
    if dead_after < 2 * heartbeat:
        raise ConfigError(
            "JOBS_DEAD_WORKER_AFTER",
            f"at least twice JOBS_HEARTBEAT_INTERVAL ({2 * heartbeat:g} s)",
            r.text("JOBS_DEAD_WORKER_AFTER") or f"{dead_after:g}",
        )

    port = r.integer("INTERNAL_JOBS_CALLBACK_PORT", _D.callback_port, minimum=0, maximum=65535)
    callback_host = r.text("JOBS_CALLBACK_HOST") or DEFAULT_CALLBACK_HOST
    callback_url = r.text("INTERNAL_JOBS_CALLBACK_URL") or f"http://{callback_host}:{port}/callback"
    metrics_raw = r.text("JOBS_METRICS_PORT")
    metrics_port = (
        None if metrics_raw is None else r.integer("JOBS_METRICS_PORT", 0, minimum=0, maximum=65535)
    )
    cron_tz = r.text("JOBS_CRON_TZ") or _D.cron_tz
    try:
        zoneinfo.ZoneInfo(cron_tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("JOBS_CRON_TZ", "an IANA time zone, e.g. Europe/Paris", cron_tz) from None
    log_level = (r.text("JOBS_LOG_LEVEL") or _D.log_level).upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("JOBS_LOG_LEVEL", "one of DEBUG, INFO, WARNING, ERROR", log_level)

    insecure_callbacks = r.flag("JOBS_INSECURE_CALLBACKS", _D.insecure_callbacks)
    try:
        secrets = security.signing_secrets(env)
    except security.SecretError as exc:
        raise ConfigError(exc.variable, exc.expected + exc.detail) from None
    worker_or_callbacks = r.flag("JOBS_WORKER_ENABLED", _D.worker_enabled) or r.flag(
        "JOBS_CALLBACK_SERVER_ENABLED", _D.callback_server_enabled
    )
    if not secrets and not insecure_callbacks and worker_or_callbacks:
        raise ConfigError(
            "JOBS_SIGNING_SECRET",
            f"{security.SECRET_EXPECTED} (set it, or JOBS_SIGNING_SECRET_FILE, in the job "
            "service and every function; JOBS_INSECURE_CALLBACKS=true accepts unsigned "
            "callbacks instead)",
        )

    try:
        api_token = security.read_secret("JOBS_API_TOKEN", env)
    except security.SecretError as exc:
        raise ConfigError(exc.variable, exc.expected + exc.detail) from None

    settings = Settings(
        conninfo=r.text("DATABASE_URL") or "",
        schema=r.text("JOBS_SCHEMA") or _D.schema,
        worker_id=worker_id,
        support_any=r.flag("JOBS_SUPPORT_ANY", _D.support_any),
        supported=supported,
        gateway_map=gateway_map,
        gateway_template=template,
        gateway_url=gateway_url,
        inprocess=inprocess,
        concurrency=concurrency,
        task_concurrency=task_concurrency,
        claim_batch=r.integer("JOBS_CLAIM_BATCH", _D.claim_batch, maximum=10_000),
        prefetch=None
        if (r.text("JOBS_PREFETCH") or "auto").lower() == "auto"
        else r.integer("JOBS_PREFETCH", 0, minimum=0, maximum=100_000),
        poll_interval=r.seconds("JOBS_POLL_INTERVAL", _D.poll_interval, minimum=0.01),
        request_timeout=r.seconds("JOBS_REQUEST_TIMEOUT", _D.request_timeout, minimum=0.001),
        task_timeouts=task_timeouts,
        callback_deadline=r.seconds("JOBS_CALLBACK_DEADLINE", _D.callback_deadline, minimum=0.001),
        job_expiry=r.seconds("JOBS_JOB_EXPIRY", _D.job_expiry, minimum=1.0),
        heartbeat_interval=heartbeat,
        dead_worker_after=dead_after,
        route_backoff_min=r.seconds("JOBS_ROUTE_BACKOFF_MIN", _D.route_backoff_min, minimum=0.001),
        route_backoff_max=r.seconds("JOBS_ROUTE_BACKOFF_MAX", _D.route_backoff_max, minimum=0.001),
        shutdown_grace=r.seconds("JOBS_SHUTDOWN_GRACE", _D.shutdown_grace),
        settle_batch=r.integer("JOBS_SETTLE_BATCH", _D.settle_batch, maximum=10_000),
        vacuum_every=r.integer("JOBS_VACUUM_EVERY", _D.vacuum_every, minimum=0),
        settle_delay=r.seconds("JOBS_SETTLE_DELAY_MS", _D.settle_delay * 1000.0) / 1000.0,
        signing_secret=secrets[0] if secrets else None,
        signing_secret_previous=secrets[1] if len(secrets) > 1 else None,
        insecure_callbacks=insecure_callbacks,
        max_reply_bytes=r.integer(
            "JOBS_MAX_REPLY_BYTES", _D.max_reply_bytes, minimum=1024, maximum=2**31 - 1
        ),
        callback_port=port,
        callback_bind=r.text("JOBS_CALLBACK_BIND") or _D.callback_bind,
        callback_url=callback_url,
        worker_enabled=r.flag("JOBS_WORKER_ENABLED", _D.worker_enabled),
        callback_server_enabled=r.flag("JOBS_CALLBACK_SERVER_ENABLED", True),
        scheduler_enabled=r.flag("JOBS_SCHEDULER_ENABLED", _D.scheduler_enabled),
        cron_tz=cron_tz,
        scheduler_poll_interval=r.seconds(
            "JOBS_SCHEDULER_POLL_INTERVAL", _D.scheduler_poll_interval, minimum=0.01
        ),
        metrics_port=metrics_port,
        metrics_interval=r.seconds("JOBS_METRICS_INTERVAL", _D.metrics_interval, minimum=0.05),
        db_pool_size=r.integer("JOBS_DB_POOL_SIZE", _D.db_pool_size, minimum=2, maximum=1000),
        log_level=log_level,
        api_token=api_token,
        history_retention=_retention(r),
    )
    if settings.worker_enabled and not settings.support_any and not settings.supported:
        raise ConfigError(
            "JOBS_SUPPORTED",
            "a comma-separated list of task identifiers when JOBS_SUPPORT_ANY is false",
        )
    return settings
