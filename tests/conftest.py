"""Shared fixtures: a real PostgreSQL for every test, and an isolated database per test.

The server is ``TEST_DATABASE_URL`` when set, else the one ``PG*`` names, else an embedded
PostgreSQL (the ``pgserver`` wheel) started once per run with its data in ``.cache/``.
Each test gets a database of its own, created from a template that already holds the
migrated ``app_jobs`` schema, so tests are isolated and cheap.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.database import (
    configured_conninfo,
    create_database,
    drop_database,
    start_embedded,
    with_dbname,
)

ROOT = Path(__file__).resolve().parents[1]

# pgserver logs its own progress at INFO, last from an exit handler that runs after pytest has
# closed the streams it captured (a "--- Logging error ---" at the end of every run).
logging.getLogger("pgserver").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def pg_admin_conninfo() -> Iterator[str]:
    """Conninfo of a superuser connection to the test server's maintenance database."""
    conninfo = configured_conninfo(url_var="TEST_DATABASE_URL")
    if conninfo is not None:
        yield conninfo
        return
    server = start_embedded(ROOT / ".cache" / "pg-test")
    try:
        yield server.conninfo
    finally:
        server.stop()


@pytest.fixture(scope="session")
def schema_template(pg_admin_conninfo: str) -> Iterator[str]:
    """Name of a template database with the app_jobs schema migrated into it."""
    from jobservice.migrate import migrate

    name = f"jobs_tpl_{uuid.uuid4().hex[:12]}"
    conninfo = create_database(pg_admin_conninfo, name)
    migrate(conninfo)
    try:
        yield name
    finally:
        drop_database(pg_admin_conninfo, name)


@pytest.fixture
def db_conninfo(pg_admin_conninfo: str, schema_template: str) -> Iterator[str]:
    """Conninfo of a fresh database of this test's own, with the app_jobs schema."""
    name = f"jobs_t_{uuid.uuid4().hex[:12]}"
    conninfo = create_database(pg_admin_conninfo, name, template=schema_template)
    try:
        yield conninfo
    finally:
        drop_database(pg_admin_conninfo, name)


@pytest.fixture
def empty_db_conninfo(pg_admin_conninfo: str) -> Iterator[str]:
    """Conninfo of a fresh, empty database of this test's own."""
    name = f"jobs_e_{uuid.uuid4().hex[:12]}"
    conninfo = create_database(pg_admin_conninfo, name)
    try:
        yield conninfo
    finally:
        drop_database(pg_admin_conninfo, name)


__all__ = ["ROOT", "with_dbname"]
