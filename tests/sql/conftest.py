"""Fixtures of the SQL tests: connections to a fresh migrated database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
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
