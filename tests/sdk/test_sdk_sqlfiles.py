"""jobfn.sqlfiles: the one loader of ``-- name:`` query files, bound to a schema safely."""

from __future__ import annotations

import pytest

from jobfn.sqlfiles import QuerySet, bind, load, parse

TEXT = """-- A header comment before any query is ignored.
-- name: first
-- what it does
SELECT * FROM {schema}.jobs
WHERE id = %(id)s;

-- name: second
SELECT 2;
"""


def test_parse_keeps_each_block_without_comments_or_trailing_semicolon() -> None:
    assert parse(TEXT) == {
        "first": "SELECT * FROM {schema}.jobs\nWHERE id = %(id)s",
        "second": "SELECT 2",
    }


def test_parse_errors_name_the_file_and_the_query() -> None:
    with pytest.raises(ValueError, match=r"^extra.sql: query 'a' is defined twice$"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", source="extra.sql")
    with pytest.raises(ValueError, match=r"^extra.sql: query 'b' is empty$"):
        parse("-- name: b\n-- nothing here\n", source="extra.sql")


def test_the_schema_is_bound_as_a_quoted_identifier() -> None:
    bound = bind(parse(TEXT), 'odd"; DROP TABLE x; --')
    text = bound["first"].as_string()
    assert 'FROM "odd""; DROP TABLE x; --".jobs' in text


def test_a_query_set_exposes_every_query_by_attribute_and_by_name() -> None:
    qs = QuerySet(load("jobfn", "client.sql"), "app_jobs", source="client.sql")
    assert "add_jobs" in qs
    assert len(qs) >= 2
    assert qs.add_jobs is qs["add_jobs"]
    assert '"app_jobs".add_jobs' in qs.add_jobs.as_string()
    with pytest.raises(AttributeError, match=r"client.sql has no query named 'add_jbos'"):
        _ = qs.add_jbos


def test_a_query_cannot_shadow_the_sets_own_attributes() -> None:
    with pytest.raises(ValueError, match=r"'schema' cannot name a query"):
        QuerySet({"schema": "SELECT 1"}, "app_jobs", source="x.sql")
