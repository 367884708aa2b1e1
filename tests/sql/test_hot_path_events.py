"""Live events (NOTIFY "jobs:events") after 0007: the worker's functions send the ids they
touched themselves; any other UPDATE or DELETE of jobs still sends an event, without ids."""

from __future__ import annotations

from collections.abc import Callable

from sqljobs import DB_ID, Conn, add

Connect = Callable[[], Conn]


def claim(db: Conn, n: int = 10) -> list[int]:
    rows = db.execute(
        "SELECT id FROM app_jobs.claim_jobs_brief('worker-1', NULL, '4 hours', %s)", [n]
    ).fetchall()
    return sorted(int(str(r["id"])) for r in rows)


class Events:
    """A LISTEN connection; :meth:`take` returns the payloads delivered since the last call."""

    def __init__(self, connect: Connect) -> None:
        self.conn = connect()
        self.conn.execute('LISTEN "jobs:events"')

    def take(self) -> list[str]:
        """Payloads up to a marker sent now (it arrives after everything committed before)."""
        self.conn.execute("SELECT pg_notify('jobs:events', 'marker')")
        got: list[str] = []
        for note in self.conn.notifies(timeout=10):
            if note.payload == "marker":
                return got
            got.append(note.payload)
        raise AssertionError(f"no marker within 10 s after {got}")


def ids_of(payloads: list[str], op: str) -> list[int]:
    return sorted(
        int(part)
        for payload in payloads
        if payload.startswith(op + ":") and payload != op + ":*"
        for part in payload[2:].split(",")
    )


def test_the_worker_path_sends_the_ids_it_touched(db: Conn, connect: Connect) -> None:
    events = Events(connect)
    a, b = add(db), add(db)
    assert ids_of(events.take(), "I") == [a, b]
    assert claim(db) == [a, b]
    got = events.take()
    assert len(got) == 1
    assert ids_of(got, "U") == [a, b]
    db.execute("SELECT app_jobs.report_progress('worker-1', %s, 50, 'half')", [a])
    assert events.take() == [f"U:{a}"]
    db.execute("SELECT app_jobs.await_callback('worker-1', %s, now() + interval '1 hour')", [b])
    assert events.take() == [f"U:{b}"]
    db.execute("SELECT app_jobs.complete_jobs('worker-1', ARRAY[%s]::bigint[])", [a]).fetchall()
    assert events.take() == [f"D:{a}"]
    db.execute(
        "SELECT * FROM app_jobs.fail_jobs('worker-1', ARRAY[%s]::bigint[], ARRAY['x'],"
        " ARRAY[false])",
        [b],
    ).fetchall()
    assert events.take() == [f"D:{b}"]
    c = add(db, max_attempts=3)
    events.take()
    claim(db)
    events.take()
    db.execute(
        "SELECT * FROM app_jobs.fail_jobs('worker-1', ARRAY[%s]::bigint[], ARRAY['x'])", [c]
    ).fetchall()
    assert events.take() == [f"U:{c}"]


def test_nothing_touched_nothing_sent(db: Conn, connect: Connect) -> None:
    events = Events(connect)
    assert claim(db) == []
    db.execute("SELECT app_jobs.complete_jobs('worker-1', ARRAY[1, 2]::bigint[])").fetchall()
    db.execute("SELECT app_jobs.report_progress('worker-1', 1, 5, NULL)")
    assert events.take() == []


def test_many_ids_become_a_refresh(db: Conn, connect: Connect) -> None:
    db.execute(
        "SELECT app_jobs.add_jobs(json_agg(json_build_object('db_id', %s::text,"
        " 'identifier', 'many', 'payload', '{}'::json))) FROM generate_series(1, 250)",
        [DB_ID],
    )
    events = Events(connect)
    assert len(claim(db, 250)) == 250
    assert events.take() == ["U:*"]


def test_other_statements_still_send_an_event_even_after_the_worker_path(
    db: Conn, connect: Connect
) -> None:
    job = add(db)
    events = Events(connect)
    db.execute("UPDATE app_jobs.jobs SET priority = 5 WHERE id = %s", [job])
    assert events.take() == ["U:*"]
    with db.transaction():  # the worker's functions leave the marker unset behind them
        claim(db)
        db.execute("UPDATE app_jobs.jobs SET priority = 6 WHERE id = %s", [job])
        db.execute("DELETE FROM app_jobs.jobs WHERE id = %s", [job])
    assert events.take() == [f"U:{job}", "U:*", "D:*"]
