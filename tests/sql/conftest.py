"""Fixtures of the SQL tests: connections to a fresh migrated database, as owner or tenant."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

Connect = Callable[[], psycopg.Connection[dict[str, object]]]


@pytest.fixture
def connect(db_conninfo: str) -> Iterator[Connect]:
    """Open autocommit connections (dict rows) to the test database; all closed at the end."""
    opened: list[psycopg.Connection[dict[str, object]]] = []

    def _connect() -> psycopg.Connection[dict[str, object]]:
        conn = psycopg.connect(db_conninfo, autocommit=True, row_factory=dict_row)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


@pytest.fixture
def db(connect: Connect) -> psycopg.Connection[dict[str, object]]:
    """One autocommit connection (dict rows) to a fresh database with the app_jobs schema."""
    return connect()


@pytest.fixture
def app_user(pg_admin_conninfo: str, db_conninfo: str) -> Iterator[str]:
    """A new LOGIN role that is a member of `authenticated` only (what an API user runs as)."""
    name = f"api_user_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE IN ROLE authenticated").format(
                sql.Identifier(name)
            )
        )
    try:
        yield name
    finally:
        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


TenantConnect = Callable[..., psycopg.Connection[dict[str, object]]]


@pytest.fixture
def as_tenant(db_conninfo: str, app_user: str) -> Iterator[TenantConnect]:
    """Open autocommit connections as ``app_user`` with the JWT claims of a tenant.

    ``as_tenant(database_id, user_id)``; ``as_tenant(None)`` connects with no claims. Closed at
    the end (before the role is dropped).
    """
    opened: list[psycopg.Connection[dict[str, object]]] = []

    def _connect(
        database_id: str | None, user_id: str | None = None
    ) -> psycopg.Connection[dict[str, object]]:
        conn = psycopg.connect(
            make_conninfo(db_conninfo, user=app_user), autocommit=True, row_factory=dict_row
        )
        opened.append(conn)
        conn.execute(
            "SELECT set_config('jwt.claims.database_id', %s, false),"
            " set_config('jwt.claims.user_id', %s, false)",
            (database_id or "", user_id or ""),
        )
        return conn

    yield _connect
    for conn in opened:
        conn.close()
