"""Enqueue jobs and look them up from application code (the ``jobfn[client]`` extra).

.. code-block:: python

    from jobfn.client import add_job

    job = add_job("send-email", {"to": "ada@example.com"}, database_id=db_id, priority=-1)

Every call takes either ``conn`` (a psycopg connection: the job is added inside your
transaction, committed with it) or ``conninfo`` (a connection string; default
``DATABASE_URL``, else libpq's ``PG*`` variables), and ``schema`` (default ``JOBS_SCHEMA``,
else ``app_jobs``). Many jobs go through ``<schema>.add_jobs`` (one statement), one job
through ``<schema>.add_job`` (or ``add_jobs`` when it names an ``actor_id``, which ``add_job``
takes from the claims only).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

try:
    import psycopg
    from psycopg.rows import AsyncRowFactory, RowFactory, RowMaker, dict_row
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jobfn.client needs psycopg: install the extra with `pip install 'jobfn[client]'`"
    ) from exc

from pydantic_core import from_json, to_json

from jobfn.env import Env
from jobfn.sqlfiles import QuerySet, load

DEFAULT_SCHEMA = "app_jobs"

R = TypeVar("R")

__all__ = [
    "Job",
    "JobSpec",
    "JobStatus",
    "add_job",
    "add_job_async",
    "add_jobs",
    "add_jobs_async",
    "job_status",
    "job_status_async",
]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue, with every option of ``add_job`` (plus ``actor_id``).

    Options left ``None`` take the SQL defaults: the database id from the JWT claims, no key,
    no queue, run now, 25 attempts, priority 0 (lower runs first).
    """

    task: str
    payload: Any = None
    database_id: UUID | str | None = None
    job_key: str | None = None
    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    priority: int | None = None
    actor_id: UUID | str | None = None

    def as_sql_json(self) -> dict[str, Any]:
        """The object ``add_jobs`` takes (only the keys that are set)."""
        if not self.task:
            raise ValueError("job task (identifier) must be a non-empty string")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 (got {self.max_attempts})")
        item: dict[str, Any] = {
            "identifier": self.task,
            "payload": {} if self.payload is None else self.payload,
        }
        optional = {
            "db_id": self.database_id,
            "job_key": self.job_key,
            "queue_name": self.queue_name,
            "run_at": self.run_at,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "actor_id": self.actor_id,
        }
        item.update({key: value for key, value in optional.items() if value is not None})
        return item


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored in the queue after it was added."""

    id: int
    task_identifier: str
    database_id: UUID | None = None
    payload: Any = None
    queue_name: str | None = None
    priority: int = 0
    run_at: datetime | None = None
    attempts: int = 0
    max_attempts: int = 25
    key: str | None = None
    actor_id: UUID | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """Where a job is: ``queued``, ``running``, ``completed`` or ``failed`` (and details)."""

    job_id: int
    status: str
    task_identifier: str
    attempts: int
    max_attempts: int
    last_error: str | None = None
    result: Any = None
    progress: int | None = None
    progress_message: str | None = None
    run_at: datetime | None = None
    locked_by: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        """Whether the job finished (completed or failed for good)."""
        return self.status in ("completed", "failed")


@cache
def _queries(schema: str) -> QuerySet:
    return QuerySet(load("jobfn", "client.sql"), schema, source="client.sql")


def _schema(schema: str | None) -> str:
    return schema or Env().text("JOBS_SCHEMA") or DEFAULT_SCHEMA


def _conninfo(conninfo: str | None) -> str:
    return conninfo if conninfo is not None else Env().text("DATABASE_URL", "") or ""


def _specs(jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        job.as_sql_json() if isinstance(job, JobSpec) else _item_from_mapping(job) for job in jobs
    ]


_SQL_NAMES = {
    "payload": "payload",
    "database_id": "db_id",
    "db_id": "db_id",
    "job_key": "job_key",
    "queue_name": "queue_name",
    "run_at": "run_at",
    "max_attempts": "max_attempts",
    "priority": "priority",
    "actor_id": "actor_id",
}
"""A mapping's option names (``JobSpec`` fields and the alias ``db_id``) -> ``add_jobs`` names."""


def _item_from_mapping(job: Mapping[str, Any]) -> dict[str, Any]:
    """The ``add_jobs`` object of a mapping: what ``JobSpec(...).as_sql_json()`` gives, checked
    the same way, without building the ``JobSpec`` (``add_jobs`` of many jobs spends its client
    time here)."""
    task = job.get("task") or job.get("identifier")
    if not isinstance(task, str):
        raise ValueError(f"each job needs a 'task' (got {dict(job)!r})")
    item: dict[str, Any] = {"identifier": task, "payload": {}}
    for key, value in job.items():
        name = _SQL_NAMES.get(key)
        if name is None:
            if key == "task" or (key == "identifier" and not job.get("task")):
                continue
            raise ValueError(f"unknown job option in {dict(job)!r}: {key!r}")
        if value is not None and not (key == "database_id" and "db_id" in job):
            item[name] = value  # db_id, when given, wins over database_id
    if not task:
        raise ValueError("job task (identifier) must be a non-empty string")
    attempts = item.get("max_attempts")
    if attempts is not None and attempts < 1:
        raise ValueError(f"max_attempts must be at least 1 (got {attempts})")
    return item


def _spec(task: str, payload: Any, options: dict[str, Any]) -> JobSpec:
    alias = options.pop("db_id", None)
    if alias is not None:
        if options.get("database_id") is not None:
            raise ValueError("pass database_id or its alias db_id, not both")
        options["database_id"] = alias
    return JobSpec(task=task, payload=payload, **options)


def _payload(text: str | None) -> Any:
    """The payload column, sent as text; ``{}`` (most jobs) is not parsed."""
    if text is None:
        return None
    return {} if text == "{}" else from_json(text)


def _job_rows(cursor: object) -> RowMaker[Job]:
    """Row factory of the ``add_jobs`` query: its columns are :class:`Job`'s fields, in order
    (read in binary: ids, uuids and timestamps cost the client less than as text)."""

    def make(values: Sequence[Any]) -> Job:
        return Job(values[0], values[1], values[2], _payload(values[3]), *values[4:])

    return make


def _one(job: Job | None) -> Job:
    if job is None:  # add_job returns its row or raises
        raise RuntimeError("add_job returned no row")
    return job


def _in_input_order(items: list[dict[str, Any]], jobs: list[Job]) -> list[Job]:
    """``add_jobs`` returns the unkeyed jobs, then the keyed ones: restore the input order."""
    keyed_count = sum(1 for item in items if "job_key" in item)
    if keyed_count == 0 or len(jobs) != len(items):
        return jobs
    unkeyed = iter(jobs[: len(jobs) - keyed_count])
    keyed = iter(jobs[len(jobs) - keyed_count :])
    return [next(keyed) if "job_key" in item else next(unkeyed) for item in items]


def _single(item: dict[str, Any]) -> dict[str, Any]:
    """The parameters of the ``add_job`` query for one ``add_jobs`` object without actor_id."""
    return {
        "db_id": item.get("db_id"),
        "identifier": item["identifier"],
        "payload": to_json(item["payload"]).decode(),
        "job_key": item.get("job_key"),
        "queue_name": item.get("queue_name"),
        "run_at": item.get("run_at"),
        "max_attempts": item.get("max_attempts"),
        "priority": item.get("priority"),
    }


@contextmanager
def _cursor(
    conn: psycopg.Connection[Any] | None,
    conninfo: str | None,
    row_factory: RowFactory[R],
    *,
    binary: bool = False,
) -> Iterator[psycopg.Cursor[R]]:
    """A cursor on ``conn`` (inside the caller's transaction), else on a connection of its own
    to ``conninfo`` (autocommit, closed afterwards)."""
    if conn is not None:
        with conn.cursor(row_factory=row_factory, binary=binary) as cur:
            yield cur
        return
    with (
        psycopg.connect(_conninfo(conninfo), autocommit=True) as own,
        own.cursor(row_factory=row_factory, binary=binary) as cur,
    ):
        yield cur


@asynccontextmanager
async def _cursor_async(
    conn: psycopg.AsyncConnection[Any] | None,
    conninfo: str | None,
    row_factory: AsyncRowFactory[R],
    *,
    binary: bool = False,
) -> AsyncIterator[psycopg.AsyncCursor[R]]:
    """:func:`_cursor` for asyncio code."""
    if conn is not None:
        async with conn.cursor(row_factory=row_factory, binary=binary) as cur:
            yield cur
        return
    async with (
        await psycopg.AsyncConnection.connect(_conninfo(conninfo), autocommit=True) as own,
        own.cursor(row_factory=row_factory, binary=binary) as cur,
    ):
        yield cur


def _status(row: Mapping[str, Any] | None) -> JobStatus | None:
    if row is None or row.get("job_id") is None:
        return None
    return JobStatus(**{key: row[key] for key in JobStatus.__dataclass_fields__ if key in row})


# -- synchronous ----------------------------------------------------------------------------


def add_jobs(
    jobs: Iterable[JobSpec | Mapping[str, Any]],
    *,
    conn: psycopg.Connection[Any] | None = None,
    conninfo: str | None = None,
    schema: str | None = None,
) -> list[Job]:
    """Enqueue many jobs in one statement; the stored jobs, in the order given.

    Each job is a :class:`JobSpec` or a mapping with its fields (``task`` or ``identifier``,
    ``payload``, ``database_id`` or ``db_id``, ``job_key``, ``queue_name``, ``run_at``,
    ``max_attempts``, ``priority``, ``actor_id``).
    """
    items = _specs(jobs)
    if not items:
        return []
    query = _queries(_schema(schema)).add_jobs
    params = {"jobs": to_json(items).decode()}
    with _cursor(conn, conninfo, _job_rows, binary=True) as cur:
        return _in_input_order(items, cur.execute(query, params).fetchall())


def add_job(
    task: str,
    payload: Any = None,
    *,
    conn: psycopg.Connection[Any] | None = None,
    conninfo: str | None = None,
    schema: str | None = None,
    database_id: UUID | str | None = None,
    db_id: UUID | str | None = None,
    job_key: str | None = None,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
    actor_id: UUID | str | None = None,
) -> Job:
    """Enqueue one job of ``task`` with ``payload`` (a JSON value or a pydantic model).

    ``job_key`` replaces a queued job with the same key; ``queue_name`` serialises the jobs
    of a queue; ``run_at`` delays it; ``priority`` orders it (lower first); ``database_id``
    (alias ``db_id``) and ``actor_id`` default to the JWT claims of the session. The stored
    job is returned.
    """
    spec = _spec(
        task,
        payload,
        {
            "database_id": database_id,
            "db_id": db_id,
            "job_key": job_key,
            "queue_name": queue_name,
            "run_at": run_at,
            "max_attempts": max_attempts,
            "priority": priority,
            "actor_id": actor_id,
        },
    )
    if spec.actor_id is not None:
        [job] = add_jobs([spec], conn=conn, conninfo=conninfo, schema=schema)
        return job
    query = _queries(_schema(schema)).add_job
    params = _single(spec.as_sql_json())
    with _cursor(conn, conninfo, _job_rows, binary=True) as cur:
        return _one(cur.execute(query, params).fetchone())


def job_status(
    job_id: int,
    *,
    conn: psycopg.Connection[Any] | None = None,
    conninfo: str | None = None,
    schema: str | None = None,
) -> JobStatus | None:
    """Where job ``job_id`` is (queued, running, completed, failed); ``None`` if unknown."""
    query = _queries(_schema(schema)).job_status
    params = {"job_id": job_id}
    with _cursor(conn, conninfo, dict_row) as cur:
        return _status(cur.execute(query, params).fetchone())


# -- asynchronous ---------------------------------------------------------------------------


async def add_jobs_async(
    jobs: Iterable[JobSpec | Mapping[str, Any]],
    *,
    conn: psycopg.AsyncConnection[Any] | None = None,
    conninfo: str | None = None,
    schema: str | None = None,
) -> list[Job]:
    """:func:`add_jobs` for asyncio code."""
    items = _specs(jobs)
    if not items:
        return []
    query = _queries(_schema(schema)).add_jobs
    params = {"jobs": to_json(items).decode()}
    async with _cursor_async(conn, conninfo, _job_rows, binary=True) as cur:
        await cur.execute(query, params)
        return _in_input_order(items, await cur.fetchall())


async def add_job_async(
    task: str,
    payload: Any = None,
    *,
    conn: psycopg.AsyncConnection[Any] | None = None,
    conninfo: str | None = None,
    schema: str | None = None,
    database_id: UUID | str | None = None,
    db_id: UUID | str | None = None,
    job_key: str | None = None,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
    actor_id: UUID | str | None = None,
) -> Job:
    """:func:`add_job` for asyncio code."""
    spec = _spec(
        task,
        payload,
        {
            "database_id": database_id,
            "db_id": db_id,
            "job_key": job_key,
            "queue_name": queue_name,
            "run_at": run_at,
            "max_attempts": max_attempts,
            "priority": priority,
            "actor_id": actor_id,
        },
    )
    if spec.actor_id is not None:
        [job] = await add_jobs_async([spec], conn=conn, conninfo=conninfo, schema=schema)
        return job
    query = _queries(_schema(schema)).add_job
    params = _single(spec.as_sql_json())
    async with _cursor_async(conn, conninfo, _job_rows, binary=True) as cur:
        await cur.execute(query, params)
        return _one(await cur.fetchone())


async def job_status_async(
    job_id: int,
    *,
    conn: psycopg.AsyncConnection[Any] | None = None,
    conninfo: str | None = None,
    schema: str | None = None,
) -> JobStatus | None:
    """:func:`job_status` for asyncio code."""
    query = _queries(_schema(schema)).job_status
    params = {"job_id": job_id}
    async with _cursor_async(conn, conninfo, dict_row) as cur:
        await cur.execute(query, params)
        return _status(await cur.fetchone())
