"""Roles the grants name are created when missing, or their grants skipped; never a failed deploy.

Roles are cluster-wide and the shared test server already has them, so these tests start a
throwaway embedded PostgreSQL cluster of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from devstack.database import EmbeddedPostgres, start_embedded, with_dbname
from jobservice.migrate import migrate

PUBLIC_EXECUTE_QUERY = (
    "SELECT count(*) FROM pg_proc p,"
    " aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
    " WHERE p.pronamespace = 'app_jobs'::regnamespace AND a.grantee = 0"
)
"""How many functions of the schema PUBLIC may execute."""
ROLES_QUERY = (
    "SELECT rolname FROM pg_roles WHERE rolname IN ('administrator', 'authenticated') ORDER BY 1"
)


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = start_embedded(tmp_path / "pg")
    try:
        yield server
    finally:
        server.stop()


def _roles(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [row[0] for row in conn.execute(ROLES_QUERY)]


def test_a_deployer_that_may_not_create_roles_skips_their_grants_with_a_notice(
    fresh_cluster: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    admin = fresh_cluster.conninfo
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE ROLE deployer LOGIN NOSUPERUSER NOCREATEROLE")
        conn.execute("CREATE DATABASE app OWNER deployer")
    assert _roles(admin) == []

    applied = migrate(make_conninfo(with_dbname(admin, "app"), user="deployer"))

    assert applied, "the schema was not applied"
    assert _roles(admin) == []
    assert "skipping its grants" in caplog.text
    with psycopg.connect(make_conninfo(with_dbname(admin, "app"), user="deployer")) as conn:
        row = conn.execute("SELECT count(*) FROM app_jobs.jobs").fetchone()
        public = conn.execute(PUBLIC_EXECUTE_QUERY).fetchone()
    assert row == (0,)
    assert public == (0,)  # without the roles, still nothing for PUBLIC: only the owner


def test_a_superuser_deploy_creates_the_roles_and_grants_them_the_schema(
    fresh_cluster: EmbeddedPostgres,
) -> None:
    admin = fresh_cluster.conninfo
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")

    migrate(with_dbname(admin, "app"))

    assert _roles(admin) == ["administrator", "authenticated"]
    with psycopg.connect(with_dbname(admin, "app")) as conn:
        row = conn.execute(
            "SELECT has_schema_privilege('administrator', 'app_jobs', 'USAGE'),"
            " has_table_privilege('administrator', 'app_jobs.jobs', 'INSERT'),"
            " has_sequence_privilege('administrator', 'app_jobs.jobs_id_seq', 'USAGE')"
        ).fetchone()
    assert row == (True, True, True)
    with psycopg.connect(with_dbname(admin, "app")) as conn:
        public = conn.execute(PUBLIC_EXECUTE_QUERY).fetchone()
        tenant = conn.execute(
            "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'app_jobs'::regnamespace"
            " AND has_function_privilege('authenticated', p.oid, 'EXECUTE')"
        ).fetchone()
    assert public == (0,)
    assert tenant == (6,)  # add_job x2, add_jobs, add_scheduled_job x2, job_status
