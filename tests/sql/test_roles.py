"""Non-superuser roles: a login granted `administrator` uses the schema; a non-superuser deploys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from jobservice.migrate import migrate

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


@pytest.fixture
def login_role(pg_admin_conninfo: str) -> Iterator[str]:
    """A new LOGIN role (no superuser, no CREATEROLE); dropped at the end."""
    name = f"app_user_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE").format(sql.Identifier(name))
        )
    try:
        yield name
    finally:
        with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_an_administrator_login_can_use_what_it_is_granted(
    db_conninfo: str, login_role: str
) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("GRANT administrator TO {}").format(sql.Identifier(login_role)))
    try:
        conninfo = make_conninfo(db_conninfo, user=login_role)
        with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
            who = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert who.fetchone() == {"rolsuper": False}
            conn.execute("SELECT app_jobs.add_job(%s::uuid, 'via-function', '{}'::json)", (DB_ID,))
            # a direct INSERT needs USAGE on the jobs sequence (missing in the reference)
            conn.execute(
                "INSERT INTO app_jobs.jobs (database_id, task_identifier, queue_name)"
                " VALUES (%s, 'direct', 'serial')",
                (DB_ID,),
            )
            claimed = conn.execute(
                "SELECT id FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 5) ORDER BY id"
            ).fetchall()
            assert len(claimed) == 2
            conn.execute("SELECT app_jobs.complete_job('worker-1', %s)", (claimed[0]["id"],))
            conn.execute("SELECT app_jobs.fail_job('worker-1', %s, 'x')", (claimed[1]["id"],))
            conn.execute("SELECT app_jobs.worker_heartbeat('worker-1')")
            conn.execute("SELECT app_jobs.rescue_dead_workers(interval '1 hour')")
            # scheduling: direct INSERT (sequence) and run_scheduled_job (invoker rights)
            row = conn.execute(
                "INSERT INTO app_jobs.scheduled_jobs (database_id, task_identifier, schedule_info)"
                " VALUES (%s, 'cleanup_task', '{\"hour\": [2], \"minute\": [0]}') RETURNING id",
                (DB_ID,),
            ).fetchone()
            assert row is not None
            spawned = conn.execute(
                "SELECT id, task_identifier FROM app_jobs.run_scheduled_job(%s)", (row["id"],)
            ).fetchone()
            assert spawned is not None
            assert spawned["task_identifier"] == "cleanup_task"
            status = conn.execute(
                "SELECT status FROM app_jobs.job_status(%s)", (claimed[0]["id"],)
            ).fetchone()
            assert status == {"status": "completed"}
            assert conn.execute("SELECT app_jobs.prune_job_history() AS n").fetchone() == {"n": 0}
    finally:
        with psycopg.connect(db_conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("REVOKE administrator FROM {}").format(sql.Identifier(login_role))
            )


def test_a_role_without_grants_cannot_touch_the_tables(db_conninfo: str, login_role: str) -> None:
    conninfo = make_conninfo(db_conninfo, user=login_role)
    with (
        psycopg.connect(conninfo, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT * FROM app_jobs.jobs")


def test_a_database_owner_without_superuser_deploys_the_schema(
    pg_admin_conninfo: str, login_role: str
) -> None:
    name = f"jobs_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(login_role)
            )
        )
    try:
        conninfo = make_conninfo(pg_admin_conninfo, dbname=name, user=login_role)
        assert migrate(conninfo)
        with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SELECT app_jobs.add_job(%s::uuid, 'task', '{}'::json)", (DB_ID,))
            privileges = conn.execute(
                "SELECT has_sequence_privilege('administrator', 'app_jobs.jobs_id_seq', 'USAGE')"
                " AS seq, has_table_privilege('administrator', 'app_jobs.jobs', 'INSERT') AS ins"
            ).fetchone()
            assert privileges == {"seq": True, "ins": True}
    finally:
        with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
