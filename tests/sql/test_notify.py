"""NOTIFY "jobs:insert" / "scheduled_jobs:insert": sent once per statement, delivered at commit."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


def _listener(conninfo: str, channel: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(conninfo, autocommit=True)
    conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
    return conn


def _received(
    conn: psycopg.Connection[tuple[object, ...]], timeout: float, stop_after: int | None = None
) -> list[str]:
    return [n.channel for n in conn.notifies(timeout=timeout, stop_after=stop_after)]


def test_a_new_job_is_announced_at_commit_and_not_before(db_conninfo: str) -> None:
    with (
        _listener(db_conninfo, "jobs:insert") as listener,
        psycopg.connect(db_conninfo, row_factory=dict_row) as writer,
    ):
        writer.execute(
            "SELECT app_jobs.add_job(%s::uuid, 'a', '{}'::json)", (DB_ID,)
        )  # transaction open, not committed
        writer.execute(
            "INSERT INTO app_jobs.jobs (database_id, task_identifier)"
            " SELECT %s, 'b' FROM generate_series(1, 50)",
            (DB_ID,),
        )
        assert _received(listener, timeout=0.5) == []
        writer.commit()
        assert _received(listener, timeout=10, stop_after=1) == ["jobs:insert"]
        # the statements of one transaction collapse into that one notification
        assert _received(listener, timeout=0.5) == []


def test_a_rolled_back_job_is_never_announced(db_conninfo: str) -> None:
    with (
        _listener(db_conninfo, "jobs:insert") as listener,
        psycopg.connect(db_conninfo) as writer,
    ):
        writer.execute("SELECT app_jobs.add_job(%s::uuid, 'a', '{}'::json)", (DB_ID,))
        writer.rollback()
        writer.execute("SELECT 1")
        writer.commit()
        assert _received(listener, timeout=0.5) == []


def test_a_new_schedule_is_announced_at_commit(db_conninfo: str) -> None:
    with (
        _listener(db_conninfo, "scheduled_jobs:insert") as listener,
        psycopg.connect(db_conninfo) as writer,
    ):
        writer.execute(
            "SELECT app_jobs.add_scheduled_job(%s::uuid, 't', '{}'::json, '{}'::json)", (DB_ID,)
        )
        assert _received(listener, timeout=0.5) == []
        writer.commit()
        assert _received(listener, timeout=10, stop_after=1) == ["scheduled_jobs:insert"]
