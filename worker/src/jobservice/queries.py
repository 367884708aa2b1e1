"""The worker's named queries (``queries.sql``), bound to a schema.

Loaded with :mod:`jobfn.sqlfiles`, the one loader of ``-- name:`` files: blocks start with
``-- name: <name>``, comment lines are dropped, and ``{schema}`` is filled with
:class:`psycopg.sql.Identifier`. Every query of the file is an attribute of :class:`Queries`
(``q.claim_jobs``) or an item (``q["claim_jobs"]``); a name the file lacks raises an error
naming it.
"""

from __future__ import annotations

from functools import cache

from jobfn.sqlfiles import QuerySet, load, parse

__all__ = ["RAW", "Queries", "parse", "queries_for"]

RAW: dict[str, str] = load("jobservice", "queries.sql")
"""``{name: query text}`` of ``queries.sql`` (with the ``{schema}`` placeholder)."""


class Queries(QuerySet):
    """The queries of ``queries.sql`` for one schema; attribute access by name."""

    def __init__(self, schema: str) -> None:
        super().__init__(RAW, schema, source="queries.sql")


@cache
def queries_for(schema: str) -> Queries:
    """The (cached) :class:`Queries` of ``schema``."""
    return Queries(schema)
