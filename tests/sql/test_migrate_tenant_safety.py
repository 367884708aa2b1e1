"""0002 adopts databases in place: a 0.16.0 one and one migrated with 0001 only.

Keyed jobs and schedules survive, keys become per-tenant (another tenant may reuse them without
touching the existing rows), rows with a task identifier that is now refused do not fail the
migration, and no function stays executable by PUBLIC.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from jobservice.migrate import load_migrations, migrate

HERE = Path(__file__).resolve().parent
MIGRATIONS = HERE.parents[1] / "sql" / "migrations"
DB_A = "aaaaaaaa-0000-4000-8000-000000000001"
DB_B = "bbbbbbbb-0000-4000-8000-000000000002"
Conn = psycopg.Connection[dict[str, object]]

SNAPSHOT = (
    "SELECT id, database_id::text AS db, task_identifier, payload::text, key, attempts,"
    " max_attempts, locked_by, run_at FROM app_jobs.jobs ORDER BY id"
)


def _build_reference(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'administrator')"
            " THEN CREATE ROLE administrator NOLOGIN; END IF; END $$"
        )
        with conn.transaction():
            conn.execute((HERE / "reference_0_16_0.sql").read_bytes())


def _migrate_0001_only(conninfo: str, tmp_path: Path) -> None:
    folder = tmp_path / "only-0001"
    folder.mkdir()
    (first,) = MIGRATIONS.glob("0001_*.sql")
    shutil.copy(first, folder / first.name)
    assert migrate(conninfo, directory=folder) == [first.name]


def _fill(conn: Conn, *, claim: str) -> None:
    """Tenant A's keyed waiting and running jobs, a keyed schedule and a job named '../x'."""
    conn.execute(
        "SELECT app_jobs.add_job(%s::uuid, 'report', '{\"owner\": \"A\"}'::json, 'waiting-key')",
        (DB_A,),
    )
    conn.execute(
        "SELECT app_jobs.add_job(%s::uuid, 'sync', '{\"owner\": \"A\"}'::json, 'running-key')",
        (DB_A,),
    )
    conn.execute(claim)
    conn.execute(
        "SELECT app_jobs.add_scheduled_job(%s::uuid, 'nightly', '{\"owner\": \"A\"}'::json,"
        " '{\"hour\": [2]}'::json, 'schedule-key')",
        (DB_A,),
    )
    conn.execute(
        "INSERT INTO app_jobs.jobs (database_id, task_identifier, queue_name)"
        " VALUES (%s, '../x', NULL)",
        (DB_A,),
    )


def _check_adopted(conninfo: str, before: list[dict[str, object]]) -> None:
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        assert conn.execute(SNAPSHOT).fetchall() == before
        # tenant B reuses every key of A: its own rows, A's untouched
        conn.execute(
            "SELECT app_jobs.add_job(%s::uuid, 'report', '{\"owner\": \"B\"}'::json,"
            " 'waiting-key')",
            (DB_B,),
        )
        conn.execute(
            "SELECT app_jobs.add_job(%s::uuid, 'sync', '{\"owner\": \"B\"}'::json, 'running-key')",
            (DB_B,),
        )
        conn.execute(
            "SELECT app_jobs.add_scheduled_job(%s::uuid, 'nightly', '{\"owner\": \"B\"}'::json,"
            " '{}'::json, 'schedule-key')",
            (DB_B,),
        )
        after = conn.execute(SNAPSHOT).fetchall()
        assert after[: len(before)] == before
        assert [(r["db"], r["key"]) for r in after[len(before) :]] == [
            (DB_B, "waiting-key"),
            (DB_B, "running-key"),
        ]
        schedules = conn.execute(
            "SELECT database_id::text AS db, payload::text, key FROM app_jobs.scheduled_jobs"
            " ORDER BY id"
        ).fetchall()
        assert schedules == [
            {"db": DB_A, "payload": '{"owner": "A"}', "key": "schedule-key"},
            {"db": DB_B, "payload": '{"owner": "B"}', "key": "schedule-key"},
        ]
        # the row named '../x' stays claimable (the worker's routing refuses it with a message)
        claimed = conn.execute(
            "SELECT task_identifier FROM app_jobs.claim_jobs('worker-2', ARRAY['../x'])"
        ).fetchall()
        assert claimed == [{"task_identifier": "../x"}]
        public = conn.execute(
            "SELECT count(*) AS n FROM pg_proc p, aclexplode(coalesce(p.proacl,"
            " acldefault('f', p.proowner))) a"
            " WHERE p.pronamespace = 'app_jobs'::regnamespace AND a.grantee = 0"
        ).fetchone()
        assert public == {"n": 0}


@pytest.mark.parametrize("renamed", [False, True], ids=["as-shipped", "renamed-constraints"])
def test_a_0_16_0_database_gets_per_tenant_keys_and_keeps_its_jobs(
    empty_db_conninfo: str, renamed: bool
) -> None:
    _build_reference(empty_db_conninfo)
    with psycopg.connect(empty_db_conninfo, autocommit=True, row_factory=dict_row) as conn:
        if renamed:  # an installation that gave its unique constraints names of its own
            conn.execute("ALTER TABLE app_jobs.jobs RENAME CONSTRAINT jobs_key_key TO job_key_u")
            conn.execute(
                "ALTER TABLE app_jobs.scheduled_jobs"
                " RENAME CONSTRAINT scheduled_jobs_key_key TO schedule_key_u"
            )
        _fill(conn, claim="SELECT app_jobs.get_job('worker-1', ARRAY['sync'])")
        conn.execute("UPDATE app_jobs.jobs SET queue_name = NULL")
        before = conn.execute(SNAPSHOT).fetchall()

    assert migrate(empty_db_conninfo) == [m.name for m in load_migrations()]

    _check_adopted(empty_db_conninfo, before)


def test_a_0001_database_gets_per_tenant_keys_and_keeps_its_jobs(
    empty_db_conninfo: str, tmp_path: Path
) -> None:
    _migrate_0001_only(empty_db_conninfo, tmp_path)
    with psycopg.connect(empty_db_conninfo, autocommit=True, row_factory=dict_row) as conn:
        _fill(conn, claim="SELECT app_jobs.claim_jobs('worker-1', ARRAY['sync'])")
        # under 0001, the key reached across tenants: B's add_job took over A's waiting job
        taken = conn.execute(
            "SELECT database_id::text AS db FROM app_jobs.add_job(%s::uuid, 'report',"
            " '{\"owner\": \"A\"}'::json, 'waiting-key')",
            (DB_B,),
        ).fetchone()
        assert taken == {"db": DB_B}
        conn.execute("UPDATE app_jobs.jobs SET database_id = %s", (DB_A,))
        before = conn.execute(SNAPSHOT).fetchall()

    applied = migrate(empty_db_conninfo)

    assert applied == [m.name for m in load_migrations()][1:]
    _check_adopted(empty_db_conninfo, before)
