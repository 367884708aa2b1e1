"""``jobs schedule add|list|enable|disable|remove|run-now``: scheduled jobs from the shell.

A schedule is a row of ``scheduled_jobs`` (see docs/scheduling.md). ``disable`` makes it
dormant (``schedule_error = 'disabled: by an operator'``, no ``next_run_at``), which every
scheduler skips; ``enable`` resets it so the next scheduler pass plans it afresh; ``run-now``
materialises one job at once with ``run_scheduled_job`` (refused while its previous job is
still pending).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg
from psycopg.types.json import Json

from jobservice import inputs
from jobservice.admin import Admin, CommandError


def _schedule_add(admin: Admin, args: argparse.Namespace) -> int:
    default_tz = admin.env.get("JOBS_CRON_TZ", "").strip() or "UTC"
    info = inputs.schedule_info(
        cron=args.cron, at=args.at, spec=args.schedule, tz=args.tz, default_tz=default_tz
    )
    payload = inputs.apply_params(inputs.parse_payload(args.payload, sys.stdin), args.param)
    if args.max_attempts is not None and args.max_attempts < 1:
        raise inputs.InputError("--max-attempts: expected an integer ≥ 1")
    params = {
        "db_id": admin.database_id(args.database_id),
        "task": args.task,
        "payload": Json(payload),
        "schedule_info": Json(info),
        "job_key": args.key,
        "queue_name": args.queue,
        "max_attempts": args.max_attempts,
        "priority": args.priority,
    }
    try:
        [row] = admin.rows("add_schedule", params)
    except psycopg.errors.NotNullViolation as exc:
        raise admin._no_database_id(exc) from None
    schedule_id = int(row["id"])
    if admin.o.json_mode:
        admin.o.json({"id": schedule_id, "task": args.task, "schedule_info": info})
    else:
        admin.o.line(f"schedule {schedule_id} ({args.task}) added", "green")
    return 0


def _schedule_list(admin: Admin, args: argparse.Namespace) -> int:
    rows = admin.rows("schedules", {"id": None})
    if admin.o.json_mode:
        admin.o.json(rows)
        return 0
    if not rows:
        admin.o.line("no schedules")
        return 0
    for row in rows:
        info = row["schedule_info"]
        row["schedule"] = info.get("rule", info) if isinstance(info, dict) else info
        row["next_run"] = row["next_run_at"]
        row["last_run"] = row["last_scheduled"]
        row["error"] = row["schedule_error"]
    columns = ["id", "task", "schedule", "state", "next_run", "last_run", "error"]
    admin.o.table(rows, columns)
    return 0


def _one(admin: Admin, query: str, schedule_id: int, did: str) -> int:
    rows = admin.rows(query, {"id": schedule_id})
    if not rows:
        raise CommandError(f"schedule {schedule_id}: no such schedule")
    if admin.o.json_mode:
        admin.o.json({"id": schedule_id, "done": did})
    else:
        admin.o.line(f"schedule {schedule_id}: {did}", "green")
    return 0


def _schedule_run_now(admin: Admin, args: argparse.Namespace) -> int:
    if not admin.rows("schedules", {"id": args.schedule_id}):
        raise CommandError(f"schedule {args.schedule_id}: no such schedule")
    try:
        rows = admin.rows("run_schedule_now", {"id": args.schedule_id})
    except psycopg.errors.RaiseException as exc:
        if "ALREADY_SCHEDULED" in str(exc):
            raise CommandError(
                f"schedule {args.schedule_id}: its previous job is still pending"
            ) from None
        raise
    job_id = int(rows[0]["id"])
    if admin.o.json_mode:
        admin.o.json({"id": args.schedule_id, "job_id": job_id})
    else:
        admin.o.line(f"schedule {args.schedule_id}: job {job_id} queued", "green")
    return 0


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add ``jobs schedule ...`` (each sets ``admin``)."""
    schedule = sub.add_parser("schedule", help="scheduled (recurring) jobs")
    ssub = schedule.add_subparsers(dest="schedule_command", required=True)

    add = ssub.add_parser("add", parents=[common], help="add (or, with --key, replace) one")
    add.add_argument("task", help="task identifier")
    add.add_argument("--cron", help='cron rule, e.g. "*/5 * * * *" (6 fields: with seconds)')
    add.add_argument("--at", help="one-off: ISO 8601 date-time with a zone")
    add.add_argument("--schedule", help="schedule_info JSON (any form of docs/scheduling.md)")
    add.add_argument("--tz", help="IANA time zone of --cron (default JOBS_CRON_TZ, else UTC)")
    add.add_argument("--payload", help="payload as a JSON object")
    add.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--database-id", "--db-id", dest="database_id")
    add.add_argument("--key", help="schedule key (adding the same key again replaces it)")
    add.add_argument("--queue")
    add.add_argument("--priority", type=int)
    add.add_argument("--max-attempts", type=int)
    add.set_defaults(admin=_schedule_add)

    listing = ssub.add_parser("list", parents=[common], help="schedules with their next run")
    listing.set_defaults(admin=_schedule_list)

    actions: list[tuple[str, str, str, str]] = [
        ("enable", "enable_schedule", "enabled", "plan it again at the next scheduler pass"),
        ("disable", "disable_schedule", "disabled", "stop firing it (kept, can be enabled)"),
        ("remove", "remove_schedule", "removed", "delete it"),
    ]
    for name, query, did, text in actions:
        action = ssub.add_parser(name, parents=[common], help=text)
        action.add_argument("schedule_id", type=int, metavar="SCHEDULE_ID")
        action.set_defaults(admin=_bind(query, did))

    now = ssub.add_parser("run-now", parents=[common], help="queue one job from it now")
    now.add_argument("schedule_id", type=int, metavar="SCHEDULE_ID")
    now.set_defaults(admin=_schedule_run_now)


def _bind(query: str, did: str) -> Any:
    def command(admin: Admin, args: argparse.Namespace) -> int:
        return _one(admin, query, args.schedule_id, did)

    return command
