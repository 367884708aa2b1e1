"""The schema is there and a job makes the round trip add → claim → complete."""

from __future__ import annotations

import psycopg

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


def test_a_job_is_added_claimed_and_completed_into_history(
    db: psycopg.Connection[dict[str, object]],
) -> None:
    job = db.execute(
        "SELECT * FROM app_jobs.add_job(%s::uuid, 'hello', '{\"n\": 1}'::json)", (DB_ID,)
    ).fetchone()
    assert job is not None
    claimed = db.execute("SELECT * FROM app_jobs.claim_jobs('worker-1', NULL, '4 hours', 10)")
    rows = claimed.fetchall()
    assert [(r["id"], r["attempts"], r["locked_by"]) for r in rows] == [(job["id"], 1, "worker-1")]
    done = db.execute(
        "SELECT * FROM app_jobs.complete_jobs('worker-1', ARRAY[%s]::bigint[],"
        " ARRAY['{\"ok\": true}']::json[])",
        (job["id"],),
    ).fetchall()
    assert len(done) == 1
    history = db.execute("SELECT job_id, status, result, worker_id FROM app_jobs.job_history")
    assert history.fetchall() == [
        {
            "job_id": job["id"],
            "status": "completed",
            "result": {"ok": True},
            "worker_id": "worker-1",
        }
    ]
    assert db.execute("SELECT count(*) AS n FROM app_jobs.jobs").fetchone() == {"n": 0}
