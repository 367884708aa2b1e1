"""Property-based fuzzing of the SQL functions' arguments (hypothesis).

Whatever a caller passes — arbitrary JSON, text of any length and script, huge or negative
numbers, ids of other tenants' jobs, another tenant's keys — a call either works or fails with a
clear client error (SQLSTATE class 22 data exception, 23 integrity violation, P0 raised by our
functions, or 42501 when a tenant reaches for what is not its own), never an internal error,
never a crash of the server, and never a lost or changed row of the bystander tenant.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

Conn = psycopg.Connection[dict[str, object]]
TenantConnect = Callable[..., Conn]

DB_A = "aaaaaaaa-0000-4000-8000-000000000001"
DB_B = "bbbbbbbb-0000-4000-8000-000000000002"
USER_B = "bbbbbbbb-1111-4111-8111-000000000002"
BYSTANDER_WORKER = "bystander-worker"
FUZZ_WORKER = "fuzz-worker"
A_KEYS = ["a-waiting", "a-running"]
A_SCHEDULE_KEY = "a-nightly"

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies ------------------------------------------------------------------------------

_any_char = st.characters(codec="utf-8", exclude_characters="\x00")
texts = st.one_of(
    st.text(_any_char, max_size=40),
    st.text(_any_char, min_size=120, max_size=700),
    st.sampled_from(["", ".", "..", "a/b", "../admin", "default", "\u2028", "é" * 130]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(), max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
uuids = st.one_of(st.uuids().map(str), st.just(DB_A), st.just(DB_B), st.just(USER_B))
wide_ints = st.one_of(
    st.integers(min_value=-5, max_value=200),
    st.integers(min_value=-5, max_value=200),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1]),
)
worker_ids = st.one_of(st.none(), st.just(FUZZ_WORKER), texts).filter(
    lambda w: w != BYSTANDER_WORKER
)
timestamps = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ),
)


def job_element() -> st.SearchStrategy[dict[str, Any]]:
    """An add_jobs element: known field names with values of the right or the wrong type."""
    field_values: dict[str, st.SearchStrategy[Any]] = {
        "identifier": st.one_of(texts, json_values),
        "db_id": st.one_of(uuids, json_values),
        "actor_id": st.one_of(uuids, json_values),
        "payload": json_values,
        "job_key": st.one_of(st.sampled_from(A_KEYS), texts, json_values),
        "queue_name": st.one_of(texts, json_values),
        "run_at": st.one_of(timestamps.map(lambda t: t and t.isoformat()), json_values),
        "max_attempts": st.one_of(wide_ints, json_values),
        "priority": st.one_of(wide_ints, json_values),
    }
    return st.fixed_dictionaries({}, optional=field_values)


# -- the world: a bystander tenant A and a fuzzing tenant B ----------------------------------


@dataclass
class World:
    owner: Conn
    tenant: Conn
    a_ids: list[int]
    postmaster_started: object

    def snapshot(self) -> list[tuple[object, ...]]:
        """Every row of tenant A, whole, in all three tables."""
        rows = self.owner.execute(
            "SELECT 'job', row_to_json(j)::text FROM app_jobs.jobs j WHERE database_id = %s"
            " UNION ALL SELECT 'schedule', row_to_json(s)::text FROM app_jobs.scheduled_jobs s"
            "  WHERE database_id = %s"
            " UNION ALL SELECT 'history', row_to_json(h)::text FROM app_jobs.job_history h"
            "  WHERE database_id = %s ORDER BY 1, 2",
            (DB_A, DB_A, DB_A),
        ).fetchall()
        return [tuple(r.values()) for r in rows]


@pytest.fixture
def world(db: Conn, as_tenant: TenantConnect) -> Iterator[World]:
    def add(key: str | None) -> int:
        row = db.execute(
            "SELECT id FROM app_jobs.add_job(%s::uuid, 'report', '{\"owner\": \"A\"}'::json, %s)",
            (DB_A, key),
        ).fetchone()
        assert row is not None
        return int(str(row["id"]))

    def claim() -> None:
        db.execute("SELECT app_jobs.claim_jobs(%s, NULL, '4 hours', 1)", (BYSTANDER_WORKER,))

    done = add("a-done")
    claim()
    db.execute("SELECT app_jobs.complete_job(%s, %s)", (BYSTANDER_WORKER, done))
    running = add("a-running")
    claim()
    ids = [done, running, add("a-waiting"), add(None)]
    db.execute(
        "SELECT app_jobs.add_scheduled_job(%s::uuid, 'nightly', '{}'::json, '{}'::json, %s)",
        (DB_A, A_SCHEDULE_KEY),
    )
    started = db.execute("SELECT pg_postmaster_start_time() AS t").fetchone()
    world = World(db, as_tenant(DB_B, USER_B), ids, started)
    before = world.snapshot()
    assert len(before) == 5
    yield world
    assert world.snapshot() == before
    assert db.execute("SELECT pg_postmaster_start_time() AS t").fetchone() == started


def call(world: World, conn: Conn, query: str, args: tuple[object, ...]) -> None:
    """Run one fuzzed call; only clear client errors may come back; A is unchanged after it."""
    before = world.snapshot()
    error = ""
    try:
        conn.execute(query, args).fetchall()
    except psycopg.Error as exc:
        state = exc.sqlstate or "client"
        if not (state[:2] in {"22", "23", "P0"} or state == "42501"):
            error = f"{state} {exc}"
    assert error == ""
    assert world.snapshot() == before


def _json(value: object) -> str:
    return json.dumps(value)


# -- the properties --------------------------------------------------------------------------


@FUZZ
@given(
    db_id=st.one_of(st.none(), st.none(), st.none(), st.just(DB_B), uuids),
    identifier=st.one_of(st.just("report"), texts),
    payload=json_values,
    job_key=st.one_of(st.none(), st.sampled_from(A_KEYS), texts),
    queue_name=st.one_of(st.none(), texts),
    run_at=timestamps,
    max_attempts=st.one_of(st.none(), wide_ints),
    priority=st.one_of(st.none(), wide_ints),
)
def test_add_job_from_a_tenant(
    world: World,
    *,
    db_id: str | None,
    identifier: str,
    payload: object,
    job_key: str | None,
    queue_name: str | None,
    run_at: datetime | None,
    max_attempts: int | None,
    priority: int | None,
) -> None:
    call(
        world,
        world.tenant,
        "SELECT * FROM app_jobs.add_job(%s::uuid, %s::text, %s::json, %s::text, %s::text,"
        " %s::timestamptz, %s::numeric::int, %s::numeric::int)",
        (db_id, identifier, _json(payload), job_key, queue_name, run_at, max_attempts, priority),
    )


@FUZZ
@given(
    jobs=st.one_of(
        json_values,
        st.lists(job_element(), max_size=5),
        st.lists(st.one_of(job_element(), json_values), max_size=4),
    )
)
def test_add_jobs_from_a_tenant_with_arbitrary_json(world: World, jobs: object) -> None:
    call(world, world.tenant, "SELECT * FROM app_jobs.add_jobs(%s::json)", (_json(jobs),))


@FUZZ
@given(
    identifier=st.one_of(st.just("nightly"), texts),
    payload=json_values,
    schedule_info=json_values,
    job_key=st.one_of(st.none(), st.just(A_SCHEDULE_KEY), texts),
)
def test_add_scheduled_job_from_a_tenant(
    world: World, identifier: str, payload: object, schedule_info: object, job_key: str | None
) -> None:
    call(
        world,
        world.tenant,
        "SELECT * FROM app_jobs.add_scheduled_job(%s::text, %s::json, %s::json, %s::text)",
        (identifier, _json(payload), _json(schedule_info), job_key),
    )


def _own_running_job(world: World) -> int:
    """A job of tenant B held by the fuzzing worker, so that some calls do settle something."""
    row = world.owner.execute(
        "SELECT id FROM app_jobs.add_job(%s::uuid, 'fuzzed', '{}'::json)", (DB_B,)
    ).fetchone()
    assert row is not None
    world.owner.execute(
        "UPDATE app_jobs.jobs SET locked_by = %s, locked_at = now(), attempts = 1 WHERE id = %s",
        (FUZZ_WORKER, row["id"]),
    )
    return int(str(row["id"]))


def job_ids(world: World) -> st.SearchStrategy[list[int | None]]:
    return st.lists(
        st.one_of(st.sampled_from(world.a_ids), st.integers(-(2**63), 2**63 - 1), st.none()),
        max_size=6,
    )


@FUZZ
@given(data=st.data(), worker=worker_ids)
def test_complete_jobs_with_arbitrary_ids_and_results(
    world: World, data: st.DataObject, worker: str | None
) -> None:
    ids = [*data.draw(job_ids(world)), _own_running_job(world)]
    results = data.draw(st.one_of(st.none(), st.lists(json_values.map(_json), max_size=8)))
    call(
        world,
        world.owner,
        "SELECT * FROM app_jobs.complete_jobs(%s::text, %s::bigint[], %s::json[])",
        (worker, ids, results),
    )


@FUZZ
@given(data=st.data(), worker=worker_ids)
def test_fail_jobs_with_arbitrary_ids_and_messages(
    world: World, data: st.DataObject, worker: str | None
) -> None:
    ids = [*data.draw(job_ids(world)), _own_running_job(world)]
    messages = data.draw(st.lists(st.one_of(st.none(), texts, st.text(min_size=5000)), max_size=8))
    retryable = data.draw(st.one_of(st.none(), st.lists(st.one_of(st.none(), st.booleans()))))
    call(
        world,
        world.owner,
        "SELECT * FROM app_jobs.fail_jobs(%s::text, %s::bigint[], %s::text[], %s::boolean[])",
        (worker, ids, messages, retryable),
    )


@FUZZ
@given(
    data=st.data(),
    worker=worker_ids,
    progress=st.one_of(st.none(), wide_ints),
    message=st.one_of(st.none(), texts),
)
def test_report_progress_with_arbitrary_values(
    world: World, data: st.DataObject, worker: str | None, progress: int | None, message: str | None
) -> None:
    job_id = data.draw(st.one_of(st.sampled_from(world.a_ids), st.integers(-(2**63), 2**63 - 1)))
    call(
        world,
        world.owner,
        "SELECT app_jobs.report_progress(%s::text, %s::bigint, %s::numeric::int, %s::text)",
        (worker, job_id, progress, message),
    )
