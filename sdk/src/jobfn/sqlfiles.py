"""Named-query files: the one loader of every ``.sql`` file of ``-- name:`` blocks.

A file holds blocks, each opened by a ``-- name: <identifier>`` line and running to the next
one; other comment lines are dropped, and a trailing ``;`` is removed. ``{schema}`` is the only
substitution and is filled by :func:`bind` with :class:`psycopg.sql.Identifier` (never by
string formatting), so the schema name is always quoted as an identifier.

.. code-block:: python

    from jobfn.sqlfiles import QuerySet, load

    queries = QuerySet(load("jobfn", "client.sql"), "app_jobs", source="client.sql")
    conn.execute(queries.add_jobs, {"jobs": ...})

Parsing is pure and needs nothing beyond the standard library; binding needs psycopg (the
``client`` extra), imported only when a :class:`QuerySet` is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg import sql

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def parse(text: str, *, source: str = "queries.sql") -> dict[str, str]:
    """``{name: query text}`` of a file of ``-- name:`` blocks (comments removed).

    Raises :class:`ValueError` naming ``source`` and the query when a name is defined twice
    or a block is empty. Text before the first ``-- name:`` line is ignored.
    """
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = _NAME.match(stripped)
        if match:
            name = match.group(1)
            if name in queries:
                raise ValueError(f"{source}: query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None and not stripped.startswith("--"):
            current.append(line)
    out = {name: "\n".join(lines).strip().rstrip(";").strip() for name, lines in queries.items()}
    empty = [name for name, body in out.items() if not body]
    if empty:
        raise ValueError(f"{source}: query {empty[0]!r} is empty")
    return out


@cache
def load(package: str, filename: str) -> dict[str, str]:
    """The parsed queries of ``filename`` shipped inside ``package`` (read once, cached)."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse(text, source=filename)


def bind(queries: Mapping[str, str], schema: str) -> dict[str, sql.Composed]:
    """Each query with ``{schema}`` filled in as the quoted identifier ``schema``."""
    from psycopg import sql

    ident = sql.Identifier(schema)
    return {name: sql.SQL(text).format(schema=ident) for name, text in queries.items()}


_RESERVED = frozenset({"schema", "source", "_names"})


class QuerySet:
    """The queries of one file bound to one schema: ``qs.claim_jobs`` or ``qs["claim_jobs"]``.

    Every query of the file is an attribute (set once, so a lookup is a plain attribute
    read); a name the file lacks raises an error naming the file and the query.
    """

    schema: str
    source: str

    def __init__(self, queries: Mapping[str, str], schema: str, *, source: str = "queries.sql"):
        clash = sorted(_RESERVED.intersection(queries))
        if clash:
            raise ValueError(f"{source}: {clash[0]!r} cannot name a query (a QuerySet attribute)")
        self.__dict__.update(bind(queries, schema))
        self.schema = schema
        self.source = source
        self._names = tuple(queries)

    def __getattr__(self, name: str) -> sql.Composed:
        # Only called for a name that is not a query of the file.
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{self.source} has no query named {name!r}")

    def __getitem__(self, name: str) -> sql.Composed:
        if name not in self._names:
            raise KeyError(f"{self.source} has no query named {name!r}")
        query: sql.Composed = self.__dict__[name]
        return query

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)
