"""Tenants cannot reach each other: keys per database, claims-checked enqueue, own job status.

"Tenant A" is the victim, "tenant B" a caller of the API (a login role that is a member of
`authenticated`, with B's JWT claims) trying to reach A's jobs.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

DB_A = "aaaaaaaa-0000-4000-8000-000000000001"
DB_B = "bbbbbbbb-0000-4000-8000-000000000002"
USER_A = "aaaaaaaa-1111-4111-8111-000000000001"
USER_B = "bbbbbbbb-1111-4111-8111-000000000002"
Conn = psycopg.Connection[dict[str, object]]
TenantConnect = Callable[..., Conn]

JOB_COLUMNS = (
    "id, database_id::text AS db, actor_id::text AS actor, task_identifier, payload::text,"
    " key, attempts, max_attempts, run_at, locked_by, last_error, updated_at"
)


def tenant_jobs(db: Conn, database_id: str) -> list[dict[str, object]]:
    return db.execute(
        f"SELECT {JOB_COLUMNS} FROM app_jobs.jobs WHERE database_id = %s ORDER BY id",
        (database_id,),
    ).fetchall()


def add_keyed(db: Conn, database_id: str, key: str, payload: str = '{"owner": "A"}') -> int:
    row = db.execute(
        "SELECT id FROM app_jobs.add_job(%s::uuid, 'report', %s::json, job_key := %s)",
        (database_id, payload, key),
    ).fetchone()
    assert row is not None
    return int(str(row["id"]))


def test_another_tenants_key_does_not_take_over_a_waiting_job(
    db: Conn, as_tenant: TenantConnect
) -> None:
    add_keyed(db, DB_A, "monthly-report")
    before = tenant_jobs(db, DB_A)

    b = as_tenant(DB_B, USER_B)
    mine = b.execute(
        "SELECT id, database_id::text AS db, payload FROM app_jobs.add_job('report',"
        " '{\"owner\": \"B\"}'::json, job_key := 'monthly-report')"
    ).fetchone()

    assert mine is not None
    assert mine["db"] == DB_B
    assert mine["payload"] == {"owner": "B"}
    assert tenant_jobs(db, DB_A) == before
    # B's key is B's own: adding it again replaces B's job, still not A's
    b.execute(
        "SELECT app_jobs.add_job('report', '{\"owner\": \"B2\"}'::json,"
        " job_key := 'monthly-report')"
    )
    assert [r["payload"] for r in tenant_jobs(db, DB_B)] == ['{"owner": "B2"}']
    assert tenant_jobs(db, DB_A) == before


def test_another_tenants_key_does_not_disable_a_running_jobs_retries(
    db: Conn, as_tenant: TenantConnect
) -> None:
    job_id = add_keyed(db, DB_A, "sync")
    db.execute("SELECT app_jobs.claim_jobs('worker-1', NULL, '4 hours', 1)")
    before = tenant_jobs(db, DB_A)
    assert before[0]["locked_by"] == "worker-1"

    as_tenant(DB_B, USER_B).execute(
        "SELECT app_jobs.add_job('report', '{}'::json, job_key := 'sync')"
    )

    assert tenant_jobs(db, DB_A) == before  # still keyed, attempts untouched
    # so A's job fails into a retry, as it would have without B
    outcome = db.execute(
        "SELECT outcome FROM app_jobs.fail_jobs('worker-1', ARRAY[%s]::bigint[], ARRAY['boom'])",
        (job_id,),
    ).fetchone()
    assert outcome == {"outcome": "retry"}
    assert [r["key"] for r in tenant_jobs(db, DB_B)] == ["sync"]


def test_the_same_key_in_one_tenant_still_replaces_its_running_job(db: Conn) -> None:
    add_keyed(db, DB_A, "sync")
    (running,) = db.execute("SELECT id FROM app_jobs.claim_jobs('worker-1')").fetchall()
    add_keyed(db, DB_B, "sync")  # another tenant's job with the key changes nothing

    add_keyed(db, DB_A, "sync", '{"owner": "A2"}')

    rows = tenant_jobs(db, DB_A)
    assert [(r["id"] == running["id"], r["key"], r["payload"]) for r in rows] == [
        (True, None, '{"owner": "A"}'),
        (False, "sync", '{"owner": "A2"}'),
    ]
    assert [r["key"] for r in tenant_jobs(db, DB_B)] == ["sync"]


def test_scheduled_job_keys_belong_to_one_tenant(db: Conn, as_tenant: TenantConnect) -> None:
    db.execute(
        "SELECT app_jobs.add_scheduled_job(%s::uuid, 'nightly', '{\"owner\": \"A\"}'::json,"
        " '{\"hour\": [2]}'::json, job_key := 'nightly')",
        (DB_A,),
    )
    # A's schedule is being run by a scheduler (locked): a same-tenant add would replace it
    db.execute("SELECT app_jobs.get_scheduled_job('scheduler-1')")
    query = (
        "SELECT id, payload::text, schedule_info::text, locked_by FROM app_jobs.scheduled_jobs"
        " WHERE database_id = %s"
    )
    schedule_a = db.execute(query, (DB_A,)).fetchall()
    assert schedule_a[0]["locked_by"] == "scheduler-1"

    b = as_tenant(DB_B, USER_B)
    b.execute(
        "SELECT app_jobs.add_scheduled_job('nightly', '{\"owner\": \"B\"}'::json,"
        " '{\"hour\": [3]}'::json, job_key := 'nightly')"
    )

    assert db.execute(query, (DB_A,)).fetchall() == schedule_a
    assert [r["payload"] for r in db.execute(query, (DB_B,)).fetchall()] == ['{"owner": "B"}']


def test_a_schedules_job_key_does_not_reach_another_tenants_running_job(db: Conn) -> None:
    add_keyed(db, DB_A, "nightly")
    db.execute("SELECT app_jobs.claim_jobs('worker-1')")
    before = tenant_jobs(db, DB_A)
    schedule = db.execute(
        "SELECT id FROM app_jobs.add_scheduled_job(%s::uuid, 'nightly', '{}'::json,"
        " '{}'::json, job_key := 'nightly')",
        (DB_B,),
    ).fetchone()
    assert schedule is not None

    spawned = db.execute(
        "SELECT database_id::text AS db, key FROM app_jobs.run_scheduled_job(%s)",
        (schedule["id"],),
    ).fetchone()

    assert spawned == {"db": DB_B, "key": "nightly"}  # not ALREADY_SCHEDULED because of A
    assert tenant_jobs(db, DB_A) == before


def test_add_job_for_another_database_than_the_claims_is_refused(
    db: Conn, as_tenant: TenantConnect
) -> None:
    b = as_tenant(DB_B, USER_B)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"jwt\.claims\.database_id"):
        b.execute("SELECT app_jobs.add_job(%s::uuid, 'report', '{}'::json)", (DB_A,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="db_id"):
        b.execute(
            "SELECT app_jobs.add_scheduled_job(%s::uuid, 'report', '{}'::json, '{}'::json)",
            (DB_A,),
        )
    assert tenant_jobs(db, DB_A) == []
    # its own database, explicitly or from the claims, is fine
    b.execute("SELECT app_jobs.add_job(%s::uuid, 'report', '{}'::json)", (DB_B,))
    b.execute("SELECT app_jobs.add_job('report')")
    assert [(r["db"], r["actor"]) for r in tenant_jobs(db, DB_B)] == [(DB_B, USER_B)] * 2


def test_add_jobs_refuses_a_forged_actor_or_database_from_a_tenant(
    db: Conn, as_tenant: TenantConnect
) -> None:
    b = as_tenant(DB_B, USER_B)
    forged_actor = f'[{{"identifier": "a"}}, {{"identifier": "b", "actor_id": "{USER_A}"}}]'
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"element 2 .*actor_id"):
        b.execute("SELECT app_jobs.add_jobs(%s::json)", (forged_actor,))
    forged_db = f'[{{"identifier": "a", "db_id": "{DB_A}", "job_key": "k"}}]'
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"element 1 .*db_id"):
        b.execute("SELECT app_jobs.add_jobs(%s::json)", (forged_db,))
    assert db.execute("SELECT count(*) AS n FROM app_jobs.jobs").fetchone() == {"n": 0}

    # the claims' own values may be spelled out; left out they come from the claims
    rows = b.execute(
        "SELECT database_id::text AS db, actor_id::text AS actor FROM app_jobs.add_jobs(%s::json)",
        (
            f'[{{"identifier": "a", "actor_id": "{USER_B}", "db_id": "{DB_B}"}},'
            ' {"identifier": "b"}]',
        ),
    ).fetchall()
    assert rows == [{"db": DB_B, "actor": USER_B}] * 2


def test_a_tenant_without_a_user_claim_cannot_name_an_actor(as_tenant: TenantConnect) -> None:
    b = as_tenant(DB_B, None)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not set"):
        b.execute(
            "SELECT app_jobs.add_jobs(%s::json)",
            (f'[{{"identifier": "a", "actor_id": "{USER_B}"}}]',),
        )


def test_an_administrator_may_enqueue_for_any_tenant_and_actor(
    db: Conn, db_conninfo: str, app_user: str
) -> None:
    # the schema owner (how the job service and `jobs add` connect), with someone's claims set
    db.execute("SELECT set_config('jwt.claims.database_id', %s, false)", (DB_B,))
    rows = db.execute(
        "SELECT database_id::text AS db, actor_id::text AS actor FROM app_jobs.add_jobs(%s::json)",
        (f'[{{"identifier": "a", "actor_id": "{USER_A}", "db_id": "{DB_A}"}}]',),
    ).fetchall()
    assert rows == [{"db": DB_A, "actor": USER_A}]
    # a member of `administrator` that is no superuser, through SET ROLE as an API would
    db.execute(f'GRANT administrator TO "{app_user}"')
    try:
        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            conn.execute(f'SET ROLE "{app_user}"')
            conn.execute("SELECT set_config('jwt.claims.database_id', %s, false)", (DB_B,))
            conn.execute("SELECT app_jobs.add_job(%s::uuid, 'for-a')", (DB_A,))
    finally:
        db.execute(f'REVOKE administrator FROM "{app_user}"')
    assert [r["task_identifier"] for r in tenant_jobs(db, DB_A)] == ["a", "for-a"]


def test_set_role_authenticated_is_judged_as_the_role_not_the_session(
    db: Conn, db_conninfo: str
) -> None:
    # a superuser session that switches to `authenticated` (as PostGraphile does) is a tenant
    with psycopg.connect(db_conninfo) as conn:
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('jwt.claims.database_id', %s, true)", (DB_B,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT app_jobs.add_job(%s::uuid, 'report')", (DB_A,))
    assert tenant_jobs(db, DB_A) == []


def test_job_status_shows_a_tenant_its_own_jobs_only(db: Conn, as_tenant: TenantConnect) -> None:
    a_job = add_keyed(db, DB_A, "a")
    b_job = add_keyed(db, DB_B, "b")
    b = as_tenant(DB_B, USER_B)

    assert b.execute("SELECT job_id, status FROM app_jobs.job_status(%s)", (b_job,)).fetchall() == [
        {"job_id": b_job, "status": "queued"}
    ]
    assert b.execute("SELECT * FROM app_jobs.job_status(%s)", (a_job,)).fetchall() == []
    db.execute("SELECT app_jobs.claim_jobs('worker-1', NULL, '4 hours', 5)")
    db.execute("SELECT app_jobs.complete_jobs('worker-1', ARRAY[%s, %s]::bigint[])", (a_job, b_job))
    assert b.execute("SELECT status FROM app_jobs.job_status(%s)", (b_job,)).fetchall() == [
        {"status": "completed"}
    ]
    assert b.execute("SELECT * FROM app_jobs.job_status(%s)", (a_job,)).fetchall() == []
    no_claims = as_tenant(None)
    assert no_claims.execute("SELECT * FROM app_jobs.job_status(%s)", (b_job,)).fetchall() == []
