"""Who may execute what: nothing for PUBLIC, enqueue and status for `authenticated`, all for
`administrator` — checked for every function of the schema, later migrations' included."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

Conn = psycopg.Connection[dict[str, object]]
TenantConnect = Callable[..., Conn]
DB_B = "bbbbbbbb-0000-4000-8000-000000000002"

AUTHENTICATED = {
    "add_job(db_id uuid, identifier text, payload json, job_key text, queue_name text,"
    " run_at timestamp with time zone, max_attempts integer, priority integer)",
    "add_job(identifier text, payload json, job_key text, queue_name text,"
    " run_at timestamp with time zone, max_attempts integer, priority integer)",
    "add_jobs(jobs json)",
    "add_scheduled_job(db_id uuid, identifier text, payload json, schedule_info json,"
    " job_key text, queue_name text, max_attempts integer, priority integer)",
    "add_scheduled_job(identifier text, payload json, schedule_info json, job_key text,"
    " queue_name text, max_attempts integer, priority integer)",
    "job_status(job_id bigint)",
}
"""What `authenticated` may execute (signature as pg_get_function_identity_arguments)."""


@pytest.fixture
def fresh_role(pg_admin_conninfo: str) -> Iterator[str]:
    """A role created after the migrations, granted nothing: what PUBLIC may do, it may do."""
    name = f"nobody_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(pg_admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def executable_by(db: Conn, role: str) -> dict[str, bool]:
    """Every function of the schema (``name(args)``) → whether ``role`` may execute it."""
    rows = db.execute(
        "SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS f,"
        " has_function_privilege(%s, p.oid, 'EXECUTE') AS ok"
        " FROM pg_proc p WHERE p.pronamespace = 'app_jobs'::regnamespace",
        (role,),
    ).fetchall()
    return {str(r["f"]): bool(r["ok"]) for r in rows}


def test_no_function_of_the_schema_is_executable_by_public(db: Conn, fresh_role: str) -> None:
    everything = executable_by(db, fresh_role)
    assert len(everything) > 50
    assert sorted(f for f, ok in everything.items() if ok) == []


def test_authenticated_may_execute_the_enqueue_and_status_functions_only(db: Conn) -> None:
    granted = {f for f, ok in executable_by(db, "authenticated").items() if ok}
    assert granted == AUTHENTICATED


def test_administrator_may_execute_every_function(db: Conn) -> None:
    refused = sorted(f for f, ok in executable_by(db, "administrator").items() if not ok)
    assert refused == []


@pytest.mark.parametrize(
    "call",
    [
        "SELECT app_jobs.claim_jobs('thief-1', NULL, '4 hours', 10)",
        "SELECT app_jobs.get_job('thief-1')",
        "SELECT app_jobs.complete_job('thief-1', 1)",
        "SELECT app_jobs.complete_jobs(ARRAY[1]::bigint[])",
        "SELECT app_jobs.fail_job('thief-1', 1, 'x')",
        "SELECT app_jobs.permanently_fail_jobs(ARRAY[1]::bigint[])",
        "SELECT app_jobs.release_jobs('worker-1')",
        "SELECT app_jobs.worker_heartbeat('thief-1')",
        "SELECT app_jobs.rescue_dead_workers(interval '1 second')",
        "SELECT app_jobs.run_scheduled_job(1)",
        "SELECT app_jobs.retry_failed_job(1)",
        "SELECT app_jobs.prune_job_history(interval '0 seconds')",
    ],
)
def test_a_tenant_cannot_call_the_worker_side_functions(
    db: Conn, as_tenant: TenantConnect, call: str
) -> None:
    job = db.execute(
        "SELECT id FROM app_jobs.add_job(%s::uuid, 'task', '{}'::json)", (DB_B,)
    ).fetchone()
    assert job is not None
    tenant = as_tenant(DB_B)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied for function"):
        tenant.execute(call)
    row = db.execute("SELECT id, attempts, locked_by FROM app_jobs.jobs").fetchone()
    assert row == {"id": job["id"], "attempts": 0, "locked_by": None}


def test_a_trigger_helper_fires_for_a_tenant_without_execute_on_it(
    db: Conn, as_tenant: TenantConnect, app_user: str
) -> None:
    db.execute("CREATE TABLE public.invites (id serial PRIMARY KEY, email text)")
    db.execute(
        "CREATE TRIGGER invite_job AFTER INSERT ON public.invites FOR EACH ROW"
        " EXECUTE FUNCTION app_jobs.tg_add_job_with_row_id('send-invite')"
    )
    db.execute(f'GRANT INSERT ON public.invites TO "{app_user}"')
    db.execute(f'GRANT USAGE ON SEQUENCE public.invites_id_seq TO "{app_user}"')

    as_tenant(DB_B).execute("INSERT INTO public.invites (email) VALUES ('x@example.com')")

    rows = db.execute(
        "SELECT database_id::text AS db, task_identifier, payload FROM app_jobs.jobs"
    ).fetchall()
    assert rows == [{"db": DB_B, "task_identifier": "send-invite", "payload": {"id": 1}}]
