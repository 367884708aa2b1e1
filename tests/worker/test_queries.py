"""The named queries file parses, and every query the service uses is there."""

from __future__ import annotations

import pytest

from jobservice.queries import RAW, parse, queries_for


def test_every_query_is_named_and_schema_is_an_identifier() -> None:
    q = queries_for('we"ird')
    text = q.claim_jobs.as_string()
    assert '"we""ird".claim_jobs' in text
    for name in (
        "claim_jobs",
        "complete_jobs",
        "fail_jobs",
        "await_callback",
        "expire_callback_deadlines",
        "report_progress",
        "worker_heartbeat",
        "rescue_dead_workers",
        "unregister_worker",
        "listen",
    ):
        assert RAW[name]


def test_parse_rejects_duplicates_and_empty_blocks() -> None:
    assert parse("-- name: a\n-- comment\nSELECT 1;\n") == {"a": "SELECT 1"}
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="empty"):
        parse("-- name: a\n-- nothing\n")


def test_every_query_of_the_file_is_an_attribute_and_a_missing_one_is_named() -> None:
    q = queries_for("app_jobs")
    assert set(q) == set(RAW)
    for name in RAW:
        assert getattr(q, name) is q[name]
    with pytest.raises(AttributeError, match=r"queries.sql has no query named 'claim_jbos'"):
        _ = q.claim_jbos
    with pytest.raises(KeyError, match=r"queries.sql has no query named 'nope'"):
        q["nope"]
