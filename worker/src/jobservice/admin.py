"""The operator commands of ``jobs``: add, status, list, retry, cancel, prune, stats.

Argument parsing and table formatting are pure functions; each command opens one connection
(``DATABASE_URL`` / ``PG*``) and runs the named queries of ``admin.sql`` against ``JOBS_SCHEMA``.
Exit codes: 0 done (a waited-for job completed), 1 a job failed or an operation was refused,
2 bad input, 3 still pending when ``--wait`` gave up.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any, TextIO

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from jobservice.queries import parse

RAW = parse(resources.files("jobservice").joinpath("admin.sql").read_text(encoding="utf-8"))

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class InputError(ValueError):
    """A command-line argument is malformed; ``str(error)`` is one line naming it."""


# -- pure: arguments in, values out -----------------------------------------------------------


def parse_payload(text: str | None, stdin: TextIO) -> str:
    """The payload as JSON text: ``None`` → ``{}``, ``-`` → standard input."""
    if text is None:
        return "{}"
    if text == "-":
        text = stdin.read()
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"PAYLOAD: expected JSON ({exc.msg} at character {exc.pos})") from None
    return text


def parse_uuid(name: str, text: str | None) -> str | None:
    """A UUID argument, or ``None``."""
    if text is None:
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InputError(f"{name}: expected a UUID (got {text!r})") from None


def parse_time(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 date-time argument (a zone is required), or ``None``."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{name}: expected an ISO 8601 date-time (got {text!r})") from None
    if moment.tzinfo is None:
        raise InputError(f"{name}: expected a time zone, e.g. {text}Z or {text}+02:00")
    return moment


def parse_duration(name: str, text: str) -> str:
    """``7d`` / ``12h`` / ``30m`` / ``90s`` / ``2w`` → a PostgreSQL interval."""
    match = _DURATION.match(text)
    if match is None:
        raise InputError(f"{name}: expected a duration like 7d, 12h, 30m or 90s (got {text!r})")
    return f"{match.group(1)} {_UNITS[match.group(2)]}"


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of ``rows`` (missing values shown as ``-``)."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_default, indent=2)


# -- I/O ---------------------------------------------------------------------------------------


class Admin:
    """Runs the commands against one database and schema, printing to ``out``."""

    def __init__(self, conninfo: str, schema: str, out: TextIO | None = None) -> None:
        self.conninfo = conninfo
        self.out = out if out is not None else sys.stdout
        ident = sql.Identifier(schema)
        self._q = {name: sql.SQL(text).format(schema=ident) for name, text in RAW.items()}

    def _rows(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        with psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(self._q[name], params).fetchall()

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def add(self, args: argparse.Namespace, stdin: TextIO) -> int:
        params = {
            "task": args.task,
            "payload": parse_payload(args.payload, stdin),
            "db_id": parse_uuid("--db-id", args.db_id),
            "job_key": args.key,
            "queue_name": args.queue,
            "run_at": parse_time("--run-at", args.run_at),
            "max_attempts": args.max_attempts,
            "priority": args.priority,
        }
        [row] = self._rows("add_job", params)
        job_id = int(row["id"])
        self._print(f"job {job_id} ({args.task}) queued")
        if not args.wait:
            return 0
        return self.watch(job_id, args.timeout)

    def watch(self, job_id: int, timeout: float, poll: float = 0.2) -> int:
        """Print each change of the job's status until it completes (0) or fails (1)."""
        deadline = time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        while True:
            rows = self._rows("job_status", {"job_id": job_id})
            if rows:
                status = rows[0]
                seen = (status["status"], status["attempts"], status["last_error"])
                if seen != last:
                    last = seen
                    line = f"job {job_id}: {status['status']} (attempt {status['attempts']}"
                    line += f"/{status['max_attempts']})"
                    if status["last_error"]:
                        line += f": {status['last_error']}"
                    self._print(line)
                if status["status"] in ("completed", "failed"):
                    return 0 if status["status"] == "completed" else 1
            if time.monotonic() > deadline:
                self._print(f"job {job_id}: still pending after {timeout:g} s")
                return 3
            time.sleep(poll)

    def status(self, args: argparse.Namespace) -> int:
        rows = self._rows("job_status", {"job_id": args.job_id})
        if not rows:
            self._print(f"job {args.job_id}: no such job")
            return 1
        if args.json:
            self._print(_dumps(rows[0]))
        else:
            width = max(len(key) for key in rows[0])
            self._print("\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in rows[0].items()))
        return 0

    def list(self, args: argparse.Namespace) -> int:
        params = {"status": args.status, "task": args.task, "limit": args.limit}
        rows = self._rows("list_jobs", params)
        if args.json:
            self._print(_dumps(rows))
            return 0
        for row in rows:
            row["attempts"] = f"{row['attempts']}/{row.pop('max_attempts')}"
        columns = ["job_id", "task_identifier", "status", "attempts", "run_at", "last_error"]
        self._print(format_table(rows, columns) if rows else "no jobs")
        return 0

    def retry(self, args: argparse.Namespace) -> int:
        code = 0
        for job_id in args.job_ids:
            try:
                self._rows("retry_job", {"job_id": job_id})
            except (psycopg.errors.RaiseException, psycopg.errors.NoDataFound) as exc:
                self._print(f"job {job_id}: {exc.diag.message_primary}")
                code = 1
            else:
                self._print(f"job {job_id}: queued again")
        return code

    def cancel(self, args: argparse.Namespace) -> int:
        rows = self._rows("cancel_jobs", {"job_ids": args.job_ids, "message": args.message})
        done = {int(row["id"]) for row in rows}
        for job_id in args.job_ids:
            state = "failed for good" if job_id in done else "not cancelled (running or unknown)"
            self._print(f"job {job_id}: {state}")
        return 0 if done == set(args.job_ids) else 1

    def prune(self, args: argparse.Namespace) -> int:
        interval = parse_duration("--older-than", args.older_than)
        [row] = self._rows("prune_history", {"older_than": interval})
        self._print(f"pruned {row['pruned']} finished jobs older than {interval}")
        return 0

    def stats(self, args: argparse.Namespace) -> int:
        rows = self._rows("stats", {})
        if args.json:
            self._print(_dumps(rows))
            return 0
        columns = ["task", "queued", "running", "completed_24h", "failed_24h", "lag_seconds"]
        self._print(format_table(rows, columns) if rows else "no jobs")
        return 0


Command = Callable[[Admin, argparse.Namespace], int]


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator commands to the ``jobs`` parser (each sets ``admin``)."""
    add = sub.add_parser("add", help="enqueue a job (optionally wait for its outcome)")
    add.add_argument("task", help="task identifier, e.g. simple-email")
    add.add_argument("payload", nargs="?", help="payload as JSON ('-' reads standard input)")
    add.add_argument("--db-id", help="jobs.database_id (default: jwt.claims.database_id)")
    add.add_argument("--queue", help="serial queue name")
    add.add_argument("--key", help="job key (replaces a queued job with the same key)")
    add.add_argument("--run-at", help="ISO 8601 date-time with a zone")
    add.add_argument("--max-attempts", type=int)
    add.add_argument("--priority", type=int, help="lower runs first")
    add.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")
    add.set_defaults(admin=lambda a, args: a.add(args, sys.stdin))

    status = sub.add_parser("status", help="show one job (queued, running or finished)")
    status.add_argument("job_id", type=int)
    status.add_argument("--json", action="store_true")
    status.set_defaults(admin=Admin.status)

    listing = sub.add_parser("list", help="list recent jobs, newest first")
    which = listing.add_mutually_exclusive_group()
    for state in ("queued", "running", "completed", "failed"):
        which.add_argument(f"--{state}", dest="status", action="store_const", const=state)
    listing.add_argument("--task", help="only this task identifier")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(admin=Admin.list, status=None)

    retry = sub.add_parser("retry", help="put failed jobs back in the queue")
    retry.add_argument("job_ids", type=int, nargs="+", metavar="JOB_ID")
    retry.set_defaults(admin=Admin.retry)

    cancel = sub.add_parser("cancel", help="fail queued jobs for good")
    cancel.add_argument("job_ids", type=int, nargs="+", metavar="JOB_ID")
    cancel.add_argument("--message", default="cancelled by an operator")
    cancel.set_defaults(admin=Admin.cancel)

    prune = sub.add_parser("prune", help="delete finished jobs from the history")
    prune.add_argument("--older-than", default="7d", help="e.g. 7d, 12h (default 7d)")
    prune.set_defaults(admin=Admin.prune)

    stats = sub.add_parser("stats", help="per task: queued, running, finished in 24 h, lag")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(admin=Admin.stats)


def run(args: argparse.Namespace, conninfo: str, schema: str) -> int:
    """Run the operator command ``args`` names; bad input is one line and exit status 2."""
    command: Command = args.admin
    try:
        return command(Admin(conninfo, schema), args)
    except InputError as exc:
        print(f"jobs {args.command}: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(f"jobs {args.command}: cannot reach the database: {exc}".strip(), file=sys.stderr)
        return 1
