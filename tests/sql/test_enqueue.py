"""Enqueueing: both add_job calling styles, job keys, add_jobs, scheduled jobs, trigger helpers."""

from __future__ import annotations

import psycopg
import pytest

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
OTHER_DB = "00000000-0000-0000-0000-000000000001"
USER_ID = "11111111-2222-3333-4444-555555555555"
Conn = psycopg.Connection[dict[str, object]]


def set_claims(db: Conn, database_id: str | None = DB_ID, user_id: str | None = None) -> None:
    db.execute(
        "SELECT set_config('jwt.claims.database_id', %s, false),"
        " set_config('jwt.claims.user_id', %s, false)",
        (database_id or "", user_id or ""),
    )


def jobs(db: Conn, columns: str = "task_identifier, payload") -> list[dict[str, object]]:
    return db.execute(f"SELECT {columns} FROM app_jobs.jobs ORDER BY id").fetchall()


def test_add_job_with_named_arguments_as_in_the_reference_readme(db: Conn) -> None:
    row = db.execute(
        "SELECT * FROM app_jobs.add_job(db_id := %s::uuid, identifier := 'generate_report',"
        " payload := '{\"report_id\": 123}'::json, run_at := now() + interval '1 hour',"
        " priority := 10)",
        (DB_ID,),
    ).fetchone()
    assert row is not None
    assert str(row["database_id"]) == DB_ID
    assert row["payload"] == {"report_id": 123}
    assert (row["priority"], row["attempts"], row["max_attempts"]) == (10, 0, 25)
    assert row["queue_name"] is None
    assert row["key"] is None


def test_add_job_positional_with_a_database_id(db: Conn) -> None:
    db.execute(
        "SELECT app_jobs.add_job(%s::uuid, 'simple-email',"
        " json_build_object('to', 'user@example.com')::json)",
        (DB_ID,),
    )
    assert jobs(db, "task_identifier, payload, database_id::text AS db") == [
        {"task_identifier": "simple-email", "payload": {"to": "user@example.com"}, "db": DB_ID}
    ]


def test_add_job_claims_form_reads_database_and_user_from_jwt_claims(db: Conn) -> None:
    set_claims(db, DB_ID, USER_ID)
    db.execute(
        "SELECT app_jobs.add_job('email:send_verification_link',"
        " json_build_object('email_type', 'invite_email')::json)"
    )
    db.execute("SELECT app_jobs.add_job('bare')")
    db.execute("SELECT app_jobs.add_job(identifier := 'named', payload := '{\"a\": 1}')")
    rows = jobs(db, "task_identifier, payload, database_id::text AS db, actor_id::text AS actor")
    assert rows == [
        {
            "task_identifier": "email:send_verification_link",
            "payload": {"email_type": "invite_email"},
            "db": DB_ID,
            "actor": USER_ID,
        },
        {"task_identifier": "bare", "payload": {}, "db": DB_ID, "actor": USER_ID},
        {"task_identifier": "named", "payload": {"a": 1}, "db": DB_ID, "actor": USER_ID},
    ]


def test_an_explicit_database_id_wins_over_the_claims(db: Conn) -> None:
    set_claims(db, DB_ID)
    db.execute("SELECT app_jobs.add_job(%s::uuid, 'task')", (OTHER_DB,))
    assert jobs(db, "database_id::text AS db") == [{"db": OTHER_DB}]


def test_a_missing_database_id_is_a_clear_error(db: Conn) -> None:
    with pytest.raises(psycopg.errors.NotNullViolation, match=r"jwt\.claims\.database_id"):
        db.execute("SELECT app_jobs.add_job('task', '{}'::json)")
    with pytest.raises(psycopg.errors.NotNullViolation, match="db_id"):
        db.execute("SELECT app_jobs.add_job(NULL::uuid, 'task')")
    set_claims(db, "not-a-uuid")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a UUID"):
        db.execute("SELECT app_jobs.add_job('task')")


def test_explicit_nulls_take_the_defaults(db: Conn) -> None:
    row = db.execute(
        "SELECT payload, run_at IS NOT NULL AS has_run_at, max_attempts, priority"
        " FROM app_jobs.add_job(%s::uuid, 'task', NULL, NULL, NULL, NULL, NULL, NULL)",
        (DB_ID,),
    ).fetchone()
    assert row == {"payload": {}, "has_run_at": True, "max_attempts": 25, "priority": 0}


def test_a_waiting_keyed_job_is_replaced_and_its_attempts_reset(db: Conn) -> None:
    first = db.execute(
        "SELECT id FROM app_jobs.add_job(%s::uuid, 'task', '{\"v\": 1}'::json, job_key := 'k')",
        (DB_ID,),
    ).fetchone()
    db.execute("UPDATE app_jobs.jobs SET attempts = 3, last_error = 'earlier failure'")
    second = db.execute(
        "SELECT id FROM app_jobs.add_job(%s::uuid, 'task2', '{\"v\": 2}'::json, job_key := 'k')",
        (DB_ID,),
    ).fetchone()
    assert first == second
    assert jobs(db, "task_identifier, payload, key, attempts, last_error") == [
        {
            "task_identifier": "task2",
            "payload": {"v": 2},
            "key": "k",
            "attempts": 0,
            "last_error": None,
        }
    ]


def test_a_running_keyed_job_is_replaced_by_a_new_job_that_keeps_the_key(db: Conn) -> None:
    db.execute(
        "SELECT app_jobs.add_job(%s::uuid, 'task', '{\"v\": 1}'::json, job_key := 'k')", (DB_ID,)
    )
    (running,) = db.execute(
        "SELECT id FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 1)"
    ).fetchall()
    db.execute(
        "SELECT app_jobs.add_job(%s::uuid, 'task', '{\"v\": 2}'::json, job_key := 'k')", (DB_ID,)
    )
    rows = jobs(db, "id, payload, key, locked_by")
    assert rows == [
        {"id": running["id"], "payload": {"v": 1}, "key": None, "locked_by": "worker-1"},
        {"id": rows[1]["id"], "payload": {"v": 2}, "key": "k", "locked_by": None},
    ]
    # the replaced running job is not retried when it fails
    db.execute("SELECT app_jobs.fail_job('worker-1', %s, 'boom')", (running["id"],))
    assert jobs(db, "payload") == [{"payload": {"v": 2}}]


def test_add_jobs_inserts_many_with_claims_and_keys(db: Conn) -> None:
    set_claims(db, DB_ID, USER_ID)
    rows = db.execute(
        "SELECT id, task_identifier, database_id::text AS db, actor_id::text AS actor,"
        " queue_name, priority, key FROM app_jobs.add_jobs(%s::json)",
        (
            '[{"identifier": "a", "payload": {"i": 1}},'
            f' {{"identifier": "b", "db_id": "{OTHER_DB}", "queue_name": "default",'
            '  "priority": 3},'
            ' {"identifier": "c", "job_key": "kc", "queue_name": "serial"}]',
        ),
    ).fetchall()
    assert [
        (r["task_identifier"], r["db"], r["actor"], r["queue_name"], r["priority"], r["key"])
        for r in rows
    ] == [
        ("a", DB_ID, USER_ID, None, 0, None),
        ("b", OTHER_DB, USER_ID, None, 3, None),
        ("c", DB_ID, USER_ID, "serial", 0, "kc"),
    ]
    assert jobs(db, "payload") == [{"payload": {"i": 1}}, {"payload": {}}, {"payload": {}}]


def test_add_jobs_refuses_bad_input_naming_what_is_wrong(db: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="JSON array"):
        db.execute("SELECT app_jobs.add_jobs('{}'::json)")
    with pytest.raises(psycopg.errors.NotNullViolation, match="identifier"):
        db.execute("SELECT app_jobs.add_jobs(%s::json)", (f'[{{"db_id": "{DB_ID}"}}]',))
    with pytest.raises(psycopg.errors.NotNullViolation, match=r"jwt\.claims\.database_id"):
        db.execute('SELECT app_jobs.add_jobs(\'[{"identifier": "x"}]\'::json)')
    assert jobs(db) == []


def test_add_scheduled_job_both_styles(db: Conn) -> None:
    db.execute(
        "SELECT app_jobs.add_scheduled_job(%s::uuid, 'some-task-name',"
        " json_build_object('foo', 'bar')::json,"
        " json_build_object('rule', '*/5 * * * *')::json)",
        (DB_ID,),
    )
    set_claims(db, OTHER_DB, USER_ID)
    db.execute(
        "SELECT app_jobs.add_scheduled_job(identifier := 'claims-task',"
        " payload := json_build_object('foo', 'baz')::json,"
        " schedule_info := json_build_object('hour', json_build_array(2))::json)"
    )
    rows = db.execute(
        "SELECT task_identifier, payload, schedule_info, database_id::text AS db,"
        " actor_id::text AS actor, queue_name FROM app_jobs.scheduled_jobs ORDER BY id"
    ).fetchall()
    assert rows == [
        {
            "task_identifier": "some-task-name",
            "payload": {"foo": "bar"},
            "schedule_info": {"rule": "*/5 * * * *"},
            "db": DB_ID,
            "actor": None,
            "queue_name": None,
        },
        {
            "task_identifier": "claims-task",
            "payload": {"foo": "baz"},
            "schedule_info": {"hour": [2]},
            "db": OTHER_DB,
            "actor": USER_ID,
            "queue_name": None,
        },
    ]


def test_a_keyed_schedule_is_updated_or_replaced_keeping_its_key(db: Conn) -> None:
    def add(rule: str) -> None:
        db.execute(
            "SELECT app_jobs.add_scheduled_job(%s::uuid, 't', '{}'::json,"
            " json_build_object('rule', %s::text)::json, job_key := 'nightly')",
            (DB_ID, rule),
        )

    add("0 1 * * *")
    add("0 2 * * *")
    rows = db.execute("SELECT id, schedule_info, key FROM app_jobs.scheduled_jobs").fetchall()
    assert [(r["schedule_info"], r["key"]) for r in rows] == [({"rule": "0 2 * * *"}, "nightly")]
    db.execute("SELECT app_jobs.get_scheduled_job('sched-1')")
    add("0 3 * * *")
    replaced = db.execute(
        "SELECT id, schedule_info, key, locked_by FROM app_jobs.scheduled_jobs"
    ).fetchall()
    assert len(replaced) == 1
    assert replaced[0]["id"] != rows[0]["id"]
    assert (replaced[0]["schedule_info"], replaced[0]["key"], replaced[0]["locked_by"]) == (
        {"rule": "0 3 * * *"},
        "nightly",
        None,
    )


# -- trigger helpers ---------------------------------------------------------------------------

TRICKY = ["O'Brien", "x', (select current_user), 'y", 'quote " and \\ backslash']


@pytest.fixture
def people(db: Conn) -> Conn:
    db.execute("CREATE TABLE people (id serial PRIMARY KEY, name text, score numeric)")
    return db


def trigger(db: Conn, function: str, args: str, event: str = "INSERT") -> None:
    db.execute("DROP TRIGGER IF EXISTS enqueue ON people")
    db.execute(
        f"CREATE TRIGGER enqueue AFTER {event} ON people FOR EACH ROW"
        f" EXECUTE FUNCTION app_jobs.{function}({args})"
    )


def test_tg_add_job_with_row_id_database_form(people: Conn) -> None:
    trigger(people, "tg_add_job_with_row_id", f"'{DB_ID}', 'process_record', 'id'")
    people.execute("INSERT INTO people (name) VALUES ('a'), ('b')")
    assert jobs(people, "task_identifier, payload, database_id::text AS db") == [
        {"task_identifier": "process_record", "payload": {"id": 1}, "db": DB_ID},
        {"task_identifier": "process_record", "payload": {"id": 2}, "db": DB_ID},
    ]


def test_tg_add_job_with_row_id_claims_form_and_delete(people: Conn) -> None:
    set_claims(people, OTHER_DB, USER_ID)
    trigger(people, "tg_add_job_with_row_id", "'on-delete'", event="DELETE")
    people.execute("INSERT INTO people (name) VALUES ('a')")
    people.execute("DELETE FROM people")
    assert jobs(
        people, "task_identifier, payload, database_id::text AS db, actor_id::text AS u"
    ) == [{"task_identifier": "on-delete", "payload": {"id": 1}, "db": OTHER_DB, "u": USER_ID}]


def test_trigger_helpers_without_a_database_id_fail_clearly(people: Conn) -> None:
    trigger(people, "tg_add_job_with_row_id", "'task'")
    with pytest.raises(psycopg.errors.NotNullViolation, match=r"jwt\.claims\.database_id"):
        people.execute("INSERT INTO people (name) VALUES ('a')")


@pytest.mark.parametrize("value", TRICKY)
def test_tg_add_job_with_row_stores_values_literally(people: Conn, value: str) -> None:
    trigger(people, "tg_add_job_with_row", f"'{DB_ID}', 'whole-row'")
    people.execute("INSERT INTO people (name, score) VALUES (%s, 1.5)", (value,))
    assert jobs(people) == [
        {"task_identifier": "whole-row", "payload": {"id": 1, "name": value, "score": 1.5}}
    ]


@pytest.mark.parametrize("function", ["tg_add_job_with_fields", "trigger_job_with_fields"])
@pytest.mark.parametrize("value", TRICKY)
def test_field_triggers_store_values_literally_as_text(
    people: Conn, function: str, value: str
) -> None:
    trigger(people, function, f"'{DB_ID}', 'fields', 'id', 'name', 'score'")
    people.execute("INSERT INTO people (name, score) VALUES (%s, 1.5)", (value,))
    assert jobs(people) == [
        {"task_identifier": "fields", "payload": {"id": "1", "name": value, "score": "1.5"}}
    ]


def test_field_trigger_claims_form(people: Conn) -> None:
    set_claims(people, DB_ID)
    trigger(people, "tg_add_job_with_fields", "'fields', 'name'")
    people.execute("INSERT INTO people (name) VALUES (NULL)")
    assert jobs(people) == [{"task_identifier": "fields", "payload": {"name": None}}]


@pytest.mark.parametrize("value", TRICKY)
def test_json_build_object_apply_does_not_execute_its_arguments(db: Conn, value: str) -> None:
    row = db.execute(
        "SELECT app_jobs.json_build_object_apply(ARRAY['a', %s, 'b', 'c']) AS j", (value,)
    ).fetchone()
    assert row == {"j": {"a": value, "b": "c"}}
