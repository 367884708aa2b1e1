"""`jobs migrate`: records, idempotence, concurrent deploys, errors, JOBS_SCHEMA, adoption."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from jobservice.migrate import MigrationError, load_migrations, migrate, validate_schema

HERE = Path(__file__).resolve().parent
DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


def _recorded(conninfo: str, schema: str = "app_jobs") -> list[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            psycopg.sql.SQL("SELECT name FROM {}.schema_migrations ORDER BY name").format(
                psycopg.sql.Identifier(schema)
            )
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_migrate_applies_every_migration_once_and_records_it(empty_db_conninfo: str) -> None:
    names = [m.name for m in load_migrations()]
    assert names
    assert names[0].startswith("0001_")
    assert migrate(empty_db_conninfo) == names
    assert _recorded(empty_db_conninfo) == names
    assert migrate(empty_db_conninfo) == []
    assert _recorded(empty_db_conninfo) == names


def test_two_deploys_at_once_apply_each_migration_once(empty_db_conninfo: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def deploy() -> None:
        start.wait(timeout=30)
        try:
            results.append(migrate(empty_db_conninfo))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert errors == []
    names = [m.name for m in load_migrations()]
    assert sorted(results, key=len) == [[], names]
    assert _recorded(empty_db_conninfo) == names


def test_a_failing_migration_is_named_with_its_line_and_error(
    empty_db_conninfo: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE SCHEMA IF NOT EXISTS app_jobs;\n")
    (tmp_path / "0002_broken.sql").write_text(
        "CREATE TABLE app_jobs.first (id int);\n\nSELECT no_such_column FROM app_jobs.first;\n"
    )
    with pytest.raises(MigrationError) as caught:
        migrate(empty_db_conninfo, directory=tmp_path)
    message = str(caught.value)
    assert "0002_broken.sql" in message
    assert 'column "no_such_column" does not exist' in message
    assert "line 3" in message
    # the failed migration is rolled back as a whole; the one before it stays applied
    assert _recorded(empty_db_conninfo) == ["0001_ok.sql"]
    with psycopg.connect(empty_db_conninfo) as conn:
        assert conn.execute("SELECT to_regclass('app_jobs.first')").fetchone() == (None,)


def test_misnamed_migration_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "first.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"first\.sql"):
        load_migrations(tmp_path)


@pytest.mark.parametrize(
    "bad", ["App_Jobs", "jobs; drop table x", "1jobs", "pg_jobs", "", "a" * 64]
)
def test_schema_names_are_validated(bad: str) -> None:
    with pytest.raises(MigrationError, match="JOBS_SCHEMA"):
        validate_schema(bad)


def test_another_schema_name_gets_the_whole_schema(empty_db_conninfo: str) -> None:
    assert migrate(empty_db_conninfo, schema="tenant_jobs")
    assert migrate(empty_db_conninfo, schema="tenant_jobs") == []
    with psycopg.connect(empty_db_conninfo, autocommit=True, row_factory=dict_row) as conn:
        assert conn.execute("SELECT to_regnamespace('app_jobs') AS s").fetchone() == {"s": None}
        job = conn.execute(
            "SELECT * FROM tenant_jobs.add_job(%s::uuid, 'task', '{}'::json)", (DB_ID,)
        ).fetchone()
        assert job is not None
        claimed = conn.execute(
            "SELECT id FROM tenant_jobs.claim_jobs('worker-1', NULL, '4 hours', 5)"
        ).fetchall()
        assert claimed == [{"id": job["id"]}]
        # functions reach their own schema's tables, not app_jobs
        conn.execute("SELECT tenant_jobs.complete_job('worker-1', %s)", (job["id"],))
        assert conn.execute("SELECT status FROM tenant_jobs.job_history").fetchall() == [
            {"status": "completed"}
        ]


def test_jobs_migrate_command_reads_database_url_and_jobs_schema(empty_db_conninfo: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_db_conninfo, "JOBS_SCHEMA": "cli_jobs"}
    command = [sys.executable, "-m", "jobservice.cli", "migrate"]
    first = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=100
    )
    assert first.returncode == 0, first.stderr
    assert "applied 0001_" in first.stdout
    second = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=100
    )
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert _recorded(empty_db_conninfo, "cli_jobs")


def _build_reference(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'administrator')"
            " THEN CREATE ROLE administrator NOLOGIN; END IF; END $$"
        )
        with conn.transaction():
            conn.execute((HERE / "reference_0_16_0.sql").read_bytes())


def test_an_existing_0_16_0_schema_is_adopted_and_keeps_its_jobs(empty_db_conninfo: str) -> None:
    _build_reference(empty_db_conninfo)
    with psycopg.connect(empty_db_conninfo, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(
            "SELECT app_jobs.add_job(%s::uuid, 'queued-before', '{\"n\": 1}'::json)", (DB_ID,)
        )
        conn.execute(
            "SELECT app_jobs.add_job(%s::uuid, 'keyed-before', '{\"n\": 2}'::json, 'k1', 'serial')",
            (DB_ID,),
        )
        # a plain INSERT gets the reference's random-UUID queue
        conn.execute(
            "INSERT INTO app_jobs.jobs (database_id, task_identifier) VALUES (%s, 'plain')",
            (DB_ID,),
        )
        # an exhausted job sits in the reference table forever
        conn.execute(
            "INSERT INTO app_jobs.jobs (database_id, task_identifier, queue_name, attempts,"
            " max_attempts, last_error) VALUES (%s, 'dead', NULL, 3, 3, 'boom')",
            (DB_ID,),
        )
        conn.execute(
            "SELECT app_jobs.add_scheduled_job(%s::uuid, 'nightly', '{}'::json,"
            " '{\"hour\": [2]}'::json)",
            (DB_ID,),
        )

    applied = migrate(empty_db_conninfo)
    assert applied == [m.name for m in load_migrations()]

    with psycopg.connect(empty_db_conninfo, autocommit=True, row_factory=dict_row) as conn:
        claimed = conn.execute(
            "SELECT task_identifier, payload, key, attempts, locked_by"
            " FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 10) ORDER BY id"
        ).fetchall()
        assert claimed == [
            {
                "task_identifier": "queued-before",
                "payload": {"n": 1},
                "key": None,
                "attempts": 1,
                "locked_by": "worker-1",
            },
            {
                "task_identifier": "keyed-before",
                "payload": {"n": 2},
                "key": "k1",
                "attempts": 1,
                "locked_by": "worker-1",
            },
            {
                "task_identifier": "plain",
                "payload": {},
                "key": None,
                "attempts": 1,
                "locked_by": "worker-1",
            },
        ]
        dead = conn.execute(
            "SELECT task_identifier, status, last_error FROM app_jobs.job_history"
        ).fetchall()
        assert dead == [{"task_identifier": "dead", "status": "failed", "last_error": "boom"}]
        # reference functions were replaced by the fixed ones: fail_job is no longer STRICT
        job_id = conn.execute(
            "SELECT id FROM app_jobs.jobs WHERE task_identifier = 'plain'"
        ).fetchone()
        assert job_id is not None
        conn.execute("SELECT app_jobs.fail_job('worker-1', %s, NULL)", (job_id["id"],))
        row = conn.execute(
            "SELECT locked_by, last_error FROM app_jobs.jobs WHERE id = %s", (job_id["id"],)
        ).fetchone()
        assert row == {"locked_by": None, "last_error": "unknown error"}
        # new columns, plain INSERTs without a queue, one notification per statement
        conn.execute(
            "INSERT INTO app_jobs.jobs (database_id, task_identifier) VALUES (%s, 'after')",
            (DB_ID,),
        )
        after = conn.execute(
            "SELECT queue_name, actor_id, locked_until, created_at IS NOT NULL AS stamped"
            " FROM app_jobs.jobs WHERE task_identifier = 'after'"
        ).fetchone()
        assert after == {
            "queue_name": None,
            "actor_id": None,
            "locked_until": None,
            "stamped": True,
        }
        schedule = conn.execute(
            "SELECT task_identifier, next_run_at FROM app_jobs.scheduled_jobs"
        ).fetchall()
        assert schedule == [{"task_identifier": "nightly", "next_run_at": None}]
        # a migrated database is recorded: migrate again does nothing
    assert migrate(empty_db_conninfo) == []
