"""Where the database is: the configured one, or an embedded PostgreSQL kept in the project folder.

``DATABASE_URL`` wins; otherwise any of ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE`` or
``PGPASSWORD`` means "use libpq's environment". With neither, :func:`start_embedded` starts a
PostgreSQL from the ``pgserver`` wheel, with its data directory inside the project.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PG_ENV_VARS = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE")


def configured_conninfo(
    env: Mapping[str, str] | None = None, *, url_var: str = "DATABASE_URL"
) -> str | None:
    """The conninfo the environment asks for, or ``None`` when no database is configured.

    An empty string means "libpq reads ``PG*`` from the environment".
    """
    env = os.environ if env is None else env
    url = env.get(url_var, "").strip()
    if url:
        return url
    if any(env.get(name, "").strip() for name in PG_ENV_VARS):
        return ""
    return None


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server, another database."""
    return psycopg.conninfo.make_conninfo(conninfo, dbname=dbname)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded PostgreSQL; ``conninfo`` reaches its ``postgres`` database."""

    data_dir: Path
    conninfo: str
    server: Any

    def stop(self) -> None:
        """Stop the server (the data directory is kept)."""
        self.server.cleanup()


def start_embedded(data_dir: Path, *, keep_running: bool = False) -> EmbeddedPostgres:
    """Start (or join) the embedded PostgreSQL whose data lives in ``data_dir``.

    With ``keep_running`` the server outlives this process; otherwise it stops when the last
    process using it exits.
    """
    if not os.environ.get("XDG_RUNTIME_DIR"):
        # pgserver's platformdirs warns without it; give it a private directory of ours.
        runtime = data_dir.parent / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver  # imported here: only needed when no database is configured

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        str(data_dir), cleanup_mode=None if keep_running else "stop"
    )
    return EmbeddedPostgres(data_dir=data_dir, conninfo=server.get_uri(), server=server)


def create_database(admin_conninfo: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` (optionally from ``template``) and return its conninfo."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(query)
    return with_dbname(admin_conninfo, name)


def ensure_database(admin_conninfo: str, name: str) -> str:
    """Create database ``name`` unless it exists; return its conninfo."""
    try:
        return create_database(admin_conninfo, name)
    except psycopg.errors.DuplicateDatabase:
        return with_dbname(admin_conninfo, name)


def drop_database(admin_conninfo: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting its sessions."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
