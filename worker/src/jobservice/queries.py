"""The named queries of ``queries.sql``, parsed once at import, bound to a schema.

Blocks start with ``-- name: <name>``; comment lines are dropped; ``{schema}`` is the only
substitution and is filled with :class:`psycopg.sql.Identifier`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def parse(text: str) -> dict[str, str]:
    """``{name: query text}`` of a file of ``-- name:`` blocks (comments removed)."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _NAME.match(line.strip())
        if match:
            name = match.group(1)
            if name in queries:
                raise ValueError(f"queries.sql: query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None and not line.strip().startswith("--"):
            current.append(line)
    out = {name: "\n".join(lines).strip().rstrip(";").strip() for name, lines in queries.items()}
    empty = [name for name, body in out.items() if not body]
    if empty:
        raise ValueError(f"queries.sql: query {empty[0]!r} is empty")
    return out


RAW: dict[str, str] = parse(
    resources.files("jobservice").joinpath("queries.sql").read_text(encoding="utf-8")
)


class Queries:
    """The queries for one schema; attribute access by name (``q.claim_jobs``)."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        ident = sql.Identifier(schema)
        self._composed = {name: sql.SQL(text).format(schema=ident) for name, text in RAW.items()}
        self.claim_jobs = self["claim_jobs"]
        self.adopt_jobs = self["adopt_jobs"]
        self.runnable_tasks = self["runnable_tasks"]
        self.complete_jobs = self["complete_jobs"]
        self.fail_jobs = self["fail_jobs"]
        self.release_unreachable_jobs = self["release_unreachable_jobs"]
        self.job_holders = self["job_holders"]
        self.await_callback = self["await_callback"]
        self.expire_callback_deadlines = self["expire_callback_deadlines"]
        self.report_progress = self["report_progress"]
        self.worker_heartbeat = self["worker_heartbeat"]
        self.rescue_dead_workers = self["rescue_dead_workers"]
        self.unregister_worker = self["unregister_worker"]
        self.release_jobs = self["release_jobs"]
        self.notify_probe = self["notify_probe"]
        self.job_lock = self["job_lock"]
        self.job_finished = self["job_finished"]
        self.queue_stats = self["queue_stats"]
        self.ping = self["ping"]
        self.listen = self["listen"]

    def __getitem__(self, name: str) -> sql.Composed:
        try:
            return self._composed[name]
        except KeyError:
            raise KeyError(f"queries.sql has no query named {name!r}") from None


@cache
def queries_for(schema: str) -> Queries:
    """The (cached) :class:`Queries` of ``schema``."""
    return Queries(schema)
