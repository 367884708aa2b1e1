"""The ``jobs`` command line: ``migrate``, ``worker``, ``env`` and the operator commands
(:mod:`jobservice.admin`, :mod:`jobservice.schedcli`; see docs/operations.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from jobservice import admin


def _database_conninfo() -> str:
    """``DATABASE_URL``, else an empty conninfo so libpq reads ``PG*`` from the environment."""
    return os.environ.get("DATABASE_URL", "").strip()


def _schema() -> str:
    return os.environ.get("JOBS_SCHEMA", "").strip() or "app_jobs"


def _cmd_migrate(args: argparse.Namespace) -> int:
    from jobservice.migrate import MigrationError, migrate

    try:
        applied = migrate(_database_conninfo(), schema=_schema())
    except MigrationError as exc:
        print(f"jobs migrate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"applied": applied}))
    elif applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("schema is up to date")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    import asyncio

    from jobservice import logs
    from jobservice.config import ConfigError, load_settings

    try:
        settings = load_settings()
        from jobservice.service import Service

        service = Service(settings)
    except ConfigError as exc:
        print(f"jobs worker: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        asyncio.run(_serve(service))
    else:
        uvloop.run(_serve(service))
    return 0


async def _serve(service: object) -> None:
    """Run ``service`` until SIGTERM/SIGINT; a second signal exits at once."""
    import asyncio
    import signal

    from jobservice.service import Service

    assert isinstance(service, Service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            print(
                f"jobs worker: {signal.Signals(signum).name} received, finishing in-flight jobs "
                f"(at most {service.settings.shutdown_grace:g} s); send it again to exit now",
                file=sys.stderr,
                flush=True,
            )
            stop.set()
        else:
            os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await service.run(stop)


def _cmd_env(args: argparse.Namespace) -> int:
    from jobservice.config import VARIABLES

    if args.json:
        rows = [{"name": v.name, "default": v.default, "meaning": v.meaning} for v in VARIABLES]
        print(json.dumps(rows, indent=2))
        return 0
    print("| variable | default | meaning |")
    print("|---|---|---|")
    for var in VARIABLES:
        names = " ".join(f"`{n}`" for n in var.name.split())
        print(f"| {names} | `{var.default}` | {var.meaning} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jobs``."""
    parser = argparse.ArgumentParser(
        prog="jobs", description="PostgreSQL jobs for Knative functions"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    migrate_p = sub.add_parser("migrate", help="apply the app_jobs schema migrations")
    migrate_p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    migrate_p.set_defaults(func=_cmd_migrate)
    worker_p = sub.add_parser(
        "worker",
        help="run the worker, the callback server and the scheduler (see `jobs env`)",
    )
    worker_p.set_defaults(func=_cmd_worker)
    env_p = sub.add_parser("env", help="print the environment variables and their defaults")
    env_p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    env_p.set_defaults(func=_cmd_env)
    admin.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobs`` console script."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "admin"):
        return admin.run(args, _database_conninfo(), _schema())
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
