"""The operator commands of ``jobs``: add, list, status, retry, cancel, stats, prune (and, from
:mod:`jobservice.schedcli`, ``schedule ...``).

Input parsing is in :mod:`jobservice.inputs`, printing in :mod:`jobservice.render`, SQL in
``admin.sql``. Each command opens one connection (``DATABASE_URL`` / ``PG*``) to ``JOBS_SCHEMA``.
Every command takes ``--json``. Exit codes: 0 done (a waited-for job completed), 1 a job failed,
was not found or an operation was refused, 2 bad input, 3 still pending when ``--wait`` gave up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Json

from jobservice import inputs
from jobservice.inputs import FINISHED, STATUSES, InputError
from jobservice.queries import parse
from jobservice.render import Output

RAW = parse(resources.files("jobservice").joinpath("admin.sql").read_text(encoding="utf-8"))

LIST_COLUMNS = ("id", "task", "status", "attempts", "progress", "queue", "created_at", "run_at")
DATABASE_ID_VARIABLES = ("JOBS_DATABASE_ID", "DEFAULT_DATABASE_ID")


@cache
def queries(schema: str) -> dict[str, sql.Composed]:
    """The queries of ``admin.sql`` bound to ``schema``."""
    ident = sql.Identifier(schema)
    return {name: sql.SQL(text).format(schema=ident) for name, text in RAW.items()}


class CommandError(Exception):
    """A command could not do what was asked (exit status 1); one line."""


class Admin:
    """Runs the commands against one database and schema, printing through :class:`Output`."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        out: TextIO | None = None,
        *,
        json_mode: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.env = os.environ if env is None else env
        self.o = Output(out if out is not None else sys.stdout, json_mode=json_mode, env=self.env)
        self.q = queries(schema)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One autocommit connection for the command."""
        with psycopg.connect(self.conninfo, autocommit=True, row_factory=dict_row) as conn:
            yield conn

    def rows(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Run the named query on a new connection."""
        with self.connect() as conn:
            return conn.execute(self.q[name], params).fetchall()

    def database_id(self, given: str | None) -> str | None:
        """``--database-id``, else ``JOBS_DATABASE_ID`` / ``DEFAULT_DATABASE_ID``, else None."""
        if given is not None:
            return inputs.parse_uuid("--database-id", given)
        for name in DATABASE_ID_VARIABLES:
            if self.env.get(name, "").strip():
                return inputs.parse_uuid(name, self.env[name])
        return None

    # -- add ----------------------------------------------------------------------------------

    def add(self, args: argparse.Namespace, stdin: TextIO) -> int:
        if args.payload_arg is not None and args.payload is not None:
            raise InputError("--payload: give the payload once (positionally or with --payload)")
        text = args.payload if args.payload is not None else args.payload_arg
        base = inputs.parse_payload(text, stdin)
        common = {
            "task": args.task,
            "db_id": self.database_id(args.database_id),
            "job_key": args.key,
            "queue_name": args.queue,
            "run_at": inputs.run_at(args.run_at, args.run_in),
            "max_attempts": args.max_attempts,
            "priority": args.priority,
        }
        if args.max_attempts is not None and args.max_attempts < 1:
            raise InputError("--max-attempts: expected an integer ≥ 1")
        if args.from_file is not None:
            if args.wait:
                raise InputError("--wait: cannot follow jobs added --from-file")
            payloads = [
                inputs.apply_params({**base, **p}, args.param) for p in read_jsonl(args.from_file)
            ]
            return self._add_many(common, payloads)
        payload = inputs.apply_params(base, args.param)
        try:
            [row] = self.rows("add_job", {**common, "payload": Json(payload)})
        except psycopg.errors.NotNullViolation as exc:
            raise self._no_database_id(exc) from None
        job_id = int(row["id"])
        if self.o.json_mode and not args.wait:
            self.o.json({"id": job_id, "task": args.task})
        elif not self.o.json_mode:
            when = common["run_at"]
            state = "queued" if when is None else f"scheduled for {when.isoformat()}"
            self.o.line(f"job {job_id} ({args.task}) {state}", "green")
        if not args.wait:
            return 0
        return self.watch(job_id, args.timeout)

    def _no_database_id(self, exc: psycopg.Error) -> Exception:
        if "database id" in str(exc):
            return InputError(
                "--database-id: expected a UUID (none given, JOBS_DATABASE_ID is unset and the "
                "connection sets no jwt.claims.database_id)"
            )
        return CommandError(str(exc).splitlines()[0])

    def _add_many(self, common: Mapping[str, Any], payloads: list[dict[str, Any]]) -> int:
        """All jobs in one transaction (all or none), in batches of 500 for the progress bar."""
        ids: list[int] = []
        what = f"adding {len(payloads)} jobs"
        with (
            self.connect() as conn,
            conn.transaction(),
            conn.cursor() as cur,
            self.o.progress(len(payloads), what) as advance,
        ):
            for start in range(0, len(payloads), 500):
                chunk = payloads[start : start + 500]
                params = [{**common, "payload": Json(p)} for p in chunk]
                try:
                    cur.executemany(self.q["add_job"], params, returning=True)
                except psycopg.errors.NotNullViolation as exc:
                    raise self._no_database_id(exc) from None
                while True:
                    row = cur.fetchone()
                    if row is not None:
                        ids.append(int(row["id"]))
                    if not cur.nextset():
                        break
                advance(len(chunk))
        if self.o.json_mode:
            self.o.json({"ids": ids, "task": common["task"]})
        else:
            first = f" (ids {ids[0]}-{ids[-1]})" if ids else ""
            self.o.line(f"added {len(ids)} {common['task']} jobs{first}", "green")
        return 0

    def watch(self, job_id: int, timeout: float) -> int:
        """Print each change of the job until it completes (0) or ends otherwise (1).

        Woken by ``NOTIFY "jobs:events"`` (migration 0004); it re-reads at least every second.
        """
        deadline = time.monotonic() + timeout
        last: tuple[Any, ...] | None = None
        with self.connect() as conn:
            conn.execute('LISTEN "jobs:events"')
            while True:
                found = conn.execute(self.q["job"], {"id": job_id}).fetchall()
                if found:
                    job = found[0]
                    seen = (job["status"], job["attempts"], job["progress"], job["last_error"])
                    if seen != last:
                        last = seen
                        self._print_change(job)
                    if job["status"] in FINISHED:
                        if self.o.json_mode:
                            self.o.json(job)
                        return 0 if job["status"] == "completed" else 1
                left = deadline - time.monotonic()
                if left <= 0:
                    if not self.o.json_mode:
                        self.o.line(f"job {job_id}: still pending after {timeout:g} s", "yellow")
                    return 3
                for _ in conn.notifies(timeout=min(1.0, left), stop_after=1):
                    pass

    def _print_change(self, job: Mapping[str, Any]) -> None:
        if self.o.json_mode:
            return
        line = f"job {job['id']}: {job['status']} (attempt {job['attempts']}/{job['max_attempts']})"
        if job["status"] == "running" and job["progress"] is not None:
            line += f" {job['progress']}%"
            if job["progress_message"]:
                line += f" {job['progress_message']}"
        if job["last_error"] and job["status"] != "completed":
            line += f": {job['last_error']}"
        from jobservice.render import STATUS_STYLE

        self.o.line(line, STATUS_STYLE.get(job["status"]))

    # -- reading ------------------------------------------------------------------------------

    def status(self, args: argparse.Namespace) -> int:
        rows = self.rows("job", {"id": args.job_id})
        if not rows:
            raise CommandError(f"job {args.job_id}: no such job")
        if self.o.json_mode:
            self.o.json(rows[0])
        else:
            self.o.record(rows[0], pretty=("payload", "result"))
        return 0

    def list_jobs(self, args: argparse.Namespace) -> int:
        statuses = inputs.parse_statuses(args.status)
        if args.limit < 1 or args.page < 1:
            raise InputError("--limit: --limit and --page must be ≥ 1")
        params = {
            "statuses": statuses,
            "task": args.task,
            "queue": args.queue,
            "database_id": inputs.parse_uuid("--database-id", args.database_id),
            "limit": args.limit,
            "offset": (args.page - 1) * args.limit,
        }
        rows = self.rows("list_jobs", params)
        if self.o.json_mode:
            self.o.json(rows)
            return 0
        if not rows:
            self.o.line("no jobs")
            return 0
        for row in rows:
            row["attempts"] = f"{row['attempts']}/{row['max_attempts']}"
            if row["last_error"] and row["status"] in ("failed", "retrying", "cancelled"):
                row["error"] = row["last_error"]
        columns = [*LIST_COLUMNS]
        if any("error" in row for row in rows):
            columns.append("error")
        self.o.table(rows, columns)
        if len(rows) == args.limit:
            self.o.line(f"page {args.page}; more with --page {args.page + 1}", "dim")
        return 0

    def stats(self, args: argparse.Namespace) -> int:
        rows = self.rows("stats", {})
        if self.o.json_mode:
            self.o.json(rows)
            return 0
        if not rows:
            self.o.line("no jobs")
            return 0
        columns = ["task", "queued", "scheduled", "retrying", "running", "completed_1h"]
        columns += ["failed_1h", "p50_seconds", "p95_seconds"]
        self.o.table(rows, columns)
        return 0

    # -- acting -------------------------------------------------------------------------------

    def retry(self, args: argparse.Namespace) -> int:
        if args.failed == bool(args.job_ids):
            raise InputError("JOB_ID: give job ids or --failed (not both)")
        if args.task is not None and not args.failed:
            raise InputError("--task: only with --failed")
        if args.failed:
            done = [int(r["id"]) for r in self.rows("retry_failed", {"task": args.task})]
            if self.o.json_mode:
                self.o.json({"retried": done})
            else:
                self.o.line(f"queued {len(done)} failed jobs again", "green")
            return 0
        done = [int(r["id"]) for r in self.rows("retry_jobs", {"ids": args.job_ids})]
        refused = "not failed or cancelled"
        return self._report(args.job_ids, done, "retried", "queued again", refused)

    def cancel(self, args: argparse.Namespace) -> int:
        params = {"ids": args.job_ids, "message": args.message}
        done = [int(r["id"]) for r in self.rows("cancel_jobs", params)]
        return self._report(args.job_ids, done, "cancelled", "cancelled", "not cancelled")

    def _report(self, asked: list[int], done: list[int], key: str, did: str, refused: str) -> int:
        """Print what happened to each id; exit 1 when some were refused."""
        missed = [i for i in asked if i not in set(done)]
        states = (
            {int(r["id"]): r["status"] for r in self.rows("jobs_by_ids", {"ids": missed})}
            if missed
            else {}
        )
        if self.o.json_mode:
            refusals = {str(i): states.get(i, "no such job") for i in missed}
            self.o.json({key: done, "refused": refusals})
        else:
            for job_id in asked:
                if job_id in done:
                    self.o.line(f"job {job_id}: {did}", "green")
                else:
                    why = f"is {states[job_id]}" if job_id in states else "no such job"
                    self.o.line(f"job {job_id}: {refused} ({why})", "red")
        return 1 if missed else 0

    def prune(self, args: argparse.Namespace) -> int:
        text = args.older_than or self.env.get("JOBS_HISTORY_RETENTION", "").strip() or "7d"
        interval = inputs.parse_interval("--older-than", text)
        [row] = self.rows("prune_history", {"older_than": interval})
        if self.o.json_mode:
            self.o.json({"pruned": row["pruned"], "older_than": text})
        else:
            self.o.line(f"pruned {row['pruned']} finished jobs older than {text}")
        return 0


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The payloads of a JSON Lines file (``-`` = standard input); blank lines are skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--from-file: cannot read {path}: {exc.strerror}") from None
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(inputs.parse_json_object(f"--from-file {path} line {number}", line))
    return out


Command = Callable[[Admin, argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    return parent


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operator commands to the ``jobs`` parser (each sets ``admin``)."""
    common = _common()
    add = sub.add_parser("add", parents=[common], help="enqueue a job (or many --from-file)")
    add.add_argument("task", help="task identifier, e.g. simple-email")
    add.add_argument("payload_arg", nargs="?", metavar="PAYLOAD", help="payload JSON ('-': stdin)")
    add.add_argument("--payload", help="payload as a JSON object ('-' reads standard input)")
    add.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a payload field (dotted keys nest; numbers, true/false/null parsed); repeatable",
    )
    add.add_argument("--database-id", "--db-id", dest="database_id", help="jobs.database_id")
    add.add_argument("--queue", help="serial queue name")
    add.add_argument("--key", help="job key (replaces a queued job with the same key)")
    when = add.add_mutually_exclusive_group()
    when.add_argument("--run-at", help="ISO 8601 date-time with a zone")
    when.add_argument("--in", dest="run_in", metavar="DURATION", help="run later: 90s, 10m, 2h")
    add.add_argument("--max-attempts", type=int)
    add.add_argument("--priority", type=int, help="lower runs first")
    add.add_argument("--from-file", metavar="JSONL", help="one payload per line ('-': stdin)")
    add.add_argument("--wait", action="store_true", help="follow the job until it ends")
    add.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")
    add.set_defaults(admin=lambda a, args: a.add(args, sys.stdin))

    status = sub.add_parser("status", parents=[common], help="everything about one job")
    status.add_argument("job_id", type=int, metavar="JOB_ID")
    status.set_defaults(admin=Admin.status)

    listing = sub.add_parser("list", parents=[common], help="jobs, newest first")
    listing.add_argument(
        "--status", action="append", help=f"only these statuses ({', '.join(STATUSES)})"
    )
    for state in STATUSES:
        listing.add_argument(
            f"--{state}", dest="status", action="append_const", const=state, help=argparse.SUPPRESS
        )
    listing.add_argument("--task", help="only this task identifier")
    listing.add_argument("--queue", help="only this queue")
    listing.add_argument("--database-id", help="only this database id")
    listing.add_argument("--limit", type=int, default=50, help="jobs per page (default 50)")
    listing.add_argument("--page", type=int, default=1, help="page number (default 1)")
    listing.set_defaults(admin=Admin.list_jobs)

    retry = sub.add_parser("retry", parents=[common], help="queue failed or cancelled jobs again")
    retry.add_argument("job_ids", type=int, nargs="*", metavar="JOB_ID")
    retry.add_argument("--failed", action="store_true", help="every failed job")
    retry.add_argument("--task", help="with --failed: only this task")
    retry.set_defaults(admin=Admin.retry)

    cancel = sub.add_parser("cancel", parents=[common], help="cancel jobs that are not running")
    cancel.add_argument("job_ids", type=int, nargs="+", metavar="JOB_ID")
    cancel.add_argument("--message", default="cancelled by an operator")
    cancel.set_defaults(admin=Admin.cancel)

    prune = sub.add_parser("prune", parents=[common], help="delete old finished jobs")
    prune.add_argument(
        "--older-than", help="e.g. 7d, 12h (default JOBS_HISTORY_RETENTION, else 7d)"
    )
    prune.set_defaults(admin=Admin.prune)

    stats = sub.add_parser("stats", parents=[common], help="per task: queue and last hour")
    stats.set_defaults(admin=Admin.stats)

    from jobservice import schedcli

    schedcli.add_commands(sub, common)


def run(args: argparse.Namespace, conninfo: str, schema: str) -> int:
    """Run the operator command ``args`` names; every error is one line on standard error."""
    command: Command = args.admin
    name = " ".join(filter(None, [args.command, getattr(args, "schedule_command", None)]))
    try:
        admin = Admin(conninfo, schema, json_mode=args.json)
        return command(admin, args)
    except InputError as exc:
        print(f"jobs {name}: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"jobs {name}: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        print(f"jobs {name}: cannot reach the database: {reason}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"jobs {name}: database error: {first}", file=sys.stderr)
        return 1
