"""``jobs-dev``: run the whole system locally (``jobs-dev up``) and enqueue jobs into it.

``jobs-dev up`` uses ``DATABASE_URL`` / ``PG*`` when set, otherwise an embedded PostgreSQL kept in
``.cache/dev/pg``; applies the schema; starts the mail inbox, the development GraphQL API, both
example functions and the job service; prints where everything is; and stops it all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from devstack.database import (
    EmbeddedPostgres,
    configured_conninfo,
    ensure_database,
    start_embedded,
)
from devstack.stack import DEMO_DATABASE_ID, Ports, build_stack
from devstack.supervisor import StackError, Supervisor

STATE_DIR = Path(".cache") / "dev"
STATE_FILE = STATE_DIR / "stack.json"


def _prepare_database() -> tuple[str, EmbeddedPostgres | None]:
    conninfo = configured_conninfo()
    if conninfo is not None:
        return conninfo, None
    server = start_embedded(STATE_DIR / "pg")
    return ensure_database(server.conninfo, "jobs"), server


def _summary(conninfo: str, ports: Ports, embedded: bool) -> str:
    where = "embedded PostgreSQL (.cache/dev/pg)" if embedded else "configured PostgreSQL"
    return "\n".join(
        [
            "",
            "The jobs stack is up. Ctrl-C stops everything.",
            f"  database          {conninfo}  ({where})",
            f"  callback server   http://127.0.0.1:{ports.callback}/callback  (metrics: /metrics)",
            f"  dashboard         http://127.0.0.1:{ports.callback}/dashboard  (API: /api/jobs)",
            f"  simple-email      http://127.0.0.1:{ports.simple_email}/",
            f"  verification link http://127.0.0.1:{ports.send_verification_link}/",
            f"  GraphQL API       http://127.0.0.1:{ports.graphql}/graphql  (Host: localhost)",
            f"  mail inbox        http://127.0.0.1:{ports.inbox_web}/"
            f"  (SMTP 127.0.0.1:{ports.inbox_smtp})",
            "",
            "Enqueue a job and watch it complete (in another terminal):",
            "  .venv/bin/jobs-dev add simple-email "
            '\'{"to": "you@example.com", "subject": "Hello", "text": "It works"}\'',
            "  .venv/bin/jobs-dev add email:send_verification_link "
            '\'{"email_type": "email_verification", "email": "you@example.com", '
            '"email_id": "e1", "verification_token": "t1"}\'',
            "",
        ]
    )


async def _up(ports: Ports) -> int:
    busy = ports.busy()
    if busy:
        print(
            "jobs-dev up: these ports are in use: "
            + ", ".join(busy)
            + " (stop what uses them, or run `jobs-dev up --free-ports`)",
            file=sys.stderr,
        )
        return 1
    conninfo, server = await asyncio.to_thread(_prepare_database)
    try:
        from jobservice.migrate import MigrationError, migrate

        try:
            applied = await asyncio.to_thread(migrate, conninfo)
        except MigrationError as exc:
            print(f"jobs-dev up: {exc}", file=sys.stderr)
            return 1
        print(f"schema: {len(applied)} migration(s) applied" if applied else "schema: up to date")
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps({"conninfo": conninfo, "ports": asdict(ports)}))
        return await _run(conninfo, ports, embedded=server is not None)
    finally:
        STATE_FILE.unlink(missing_ok=True)
        if server is not None:
            server.stop()


async def _run(conninfo: str, ports: Ports, *, embedded: bool) -> int:
    supervisor = Supervisor()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bin_dir = Path(sys.executable).parent
    try:
        for spec in build_stack(conninfo, ports, bin_dir):
            starting = asyncio.create_task(supervisor.start(spec))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                starting.cancel()
                return 0
            starting.result()
        print(_summary(conninfo, ports, embedded), flush=True)
        print("ready", flush=True)
        died = asyncio.create_task(supervisor.wait_for_exit())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({died, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            print(f"jobs-dev up: {died.result()}", file=sys.stderr)
            return 1
        died.cancel()
        return 0
    except StackError as exc:
        print(f"jobs-dev up: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping…", flush=True)
        await supervisor.stop()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jobs-dev``."""
    parser = argparse.ArgumentParser(prog="jobs-dev", description="Run the jobs stack locally")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole stack; Ctrl-C stops it")
    up.add_argument(
        "--free-ports", action="store_true", help="pick free ports instead of the fixed defaults"
    )
    add = sub.add_parser("add", help="enqueue a job into the running stack and wait for it")
    add.add_argument("task", help="task identifier, e.g. simple-email")
    add.add_argument("payload", help="the job payload as JSON")
    add.add_argument("--database-id", default=DEMO_DATABASE_ID, help="jobs.database_id")
    add.add_argument("--max-attempts", type=int, default=3)
    add.add_argument("--no-wait", action="store_true", help="enqueue and return at once")
    add.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the outcome")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs-dev``."""
    args = build_parser().parse_args(argv)
    if args.command == "up":
        ports = Ports.free() if args.free_ports else Ports()
        return asyncio.run(_up(ports))
    from devstack.enqueue import add_and_watch

    return add_and_watch(
        args.task,
        args.payload,
        database_id=args.database_id,
        max_attempts=args.max_attempts,
        wait=not args.no_wait,
        timeout=args.timeout,
        state_file=STATE_FILE,
    )
