"""The ``jobs`` command line: ``jobs migrate``, ``jobs worker`` and friends."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


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
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``jobs``."""
    parser = argparse.ArgumentParser(
        prog="jobs", description="PostgreSQL jobs for Knative functions"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    migrate_p = sub.add_parser("migrate", help="apply the app_jobs schema migrations")
    migrate_p.set_defaults(func=_cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobs`` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
