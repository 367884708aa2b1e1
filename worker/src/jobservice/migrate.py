"""``jobs migrate``: apply the numbered migrations of ``sql/migrations`` to a database.

The migrations (``NNNN_name.sql``) ship inside the ``jobservice`` wheel as
``jobservice/migrations``; in a source checkout they are read from the repository's
``sql/migrations``. Each pending migration runs in its own transaction and is recorded, in the
same transaction, in ``<schema>.schema_migrations``. A session advisory lock (one per schema)
makes concurrent runs wait for each other, so two deploys at once apply each migration once.

Migrations are written for the schema ``app_jobs``. For another schema (``JOBS_SCHEMA``) every
``app_jobs`` word of a migration is replaced by the quoted schema identifier; the name must be a
plain lower-case SQL identifier (checked by :func:`validate_schema`).

A database that already holds the reference ``@pgpm/database-jobs`` 0.16.0 schema (tables but no
``schema_migrations``) is upgraded in place: the migrations are written to adopt it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger("jobservice.migrate")

DEFAULT_SCHEMA = "app_jobs"
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SCHEMA_WORD = re.compile(rf"\b{DEFAULT_SCHEMA}\b")
_RESERVED_PREFIXES = ("pg_",)
_OWN_NOTICE = "jobs migrate:"


class MigrationError(Exception):
    """A migration could not be applied (the message names the migration and the SQL error)."""


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    name: str
    text: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file as written (before schema substitution)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def validate_schema(schema: str) -> str:
    """Return ``schema`` if it is a plain lower-case identifier, else raise MigrationError."""
    if not _SCHEMA_NAME.match(schema) or schema.startswith(_RESERVED_PREFIXES):
        raise MigrationError(
            f"JOBS_SCHEMA: expected a lower-case SQL identifier (letters, digits, _; at most 63 "
            f"characters; not starting with a digit or pg_), got {schema!r}"
        )
    return schema


def _migrations_dir() -> Traversable | Path:
    packaged = resources.files("jobservice").joinpath("migrations")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "sql" / "migrations"


def load_migrations(directory: Traversable | Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the packaged ones), in number order."""
    folder = _migrations_dir() if directory is None else directory
    if not folder.is_dir():
        raise MigrationError(f"migrations folder not found: {folder}")
    found: dict[str, Migration] = {}
    numbers: dict[str, str] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name!r}: expected a name like 0001_some_name.sql"
            )
        number = match.group(1)
        if number in numbers:
            raise MigrationError(
                f"migrations {numbers[number]!r} and {entry.name!r} share the number {number}"
            )
        numbers[number] = entry.name
        found[entry.name] = Migration(entry.name, entry.read_text(encoding="utf-8"))
    return [found[name] for name in sorted(found)]


def render(migration: Migration, schema: str) -> str:
    """The SQL of ``migration`` for ``schema`` (``app_jobs`` replaced by the quoted name)."""
    validate_schema(schema)
    if schema == DEFAULT_SCHEMA:
        return migration.text
    quoted = '"' + schema + '"'  # validated: no quote characters can occur
    return _SCHEMA_WORD.sub(quoted, migration.text)


def _describe(migration: Migration, text: str, exc: psycopg.Error) -> str:
    diag = exc.diag
    parts = [f"migration {migration.name} failed: {diag.message_primary or str(exc).strip()}"]
    if diag.sqlstate:
        parts[0] += f" (SQLSTATE {diag.sqlstate})"
    position = diag.statement_position
    if position and position.isdigit():
        offset = int(position) - 1
        line = text.count("\n", 0, offset) + 1
        line_text = text.splitlines()[line - 1].strip() if text else ""
        parts.append(f"at line {line}: {line_text}")
    if diag.message_detail:
        parts.append(f"detail: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"hint: {diag.message_hint}")
    if diag.context:
        parts.append(f"context: {diag.context.strip()}")
    return "\n  ".join(parts)


def _on_notice(diag: psycopg.errors.Diagnostic) -> None:
    message = diag.message_primary or ""
    if message.startswith(_OWN_NOTICE):
        log.warning("%s", message)
    else:  # "already exists, skipping" and the like
        log.debug("%s", message)


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"jobservice.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migrate(
    conninfo: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    directory: Traversable | Path | None = None,
) -> list[str]:
    """Apply the pending migrations to the database of ``conninfo``; return the names applied.

    Safe to run repeatedly and concurrently. Raises :class:`MigrationError` naming the migration
    and the PostgreSQL error when one fails (that migration is rolled back; earlier ones stay).
    ``directory`` replaces the packaged migrations (for tests).
    """
    validate_schema(schema)
    migrations = load_migrations(directory)
    ident = sql.Identifier(schema)
    table = sql.SQL("{}.schema_migrations").format(ident)
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as exc:
        raise MigrationError(f"cannot connect to the database: {str(exc).strip()}") from exc
    applied_now: list[str] = []
    with conn:
        conn.add_notice_handler(_on_notice)
        conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(schema),))
        try:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE IF NOT EXISTS {} ("
                            " name text PRIMARY KEY,"
                            " checksum text NOT NULL,"
                            " applied_at timestamptz NOT NULL DEFAULT now())"
                        ).format(table)
                    )
                done = {
                    str(name): str(checksum)
                    for name, checksum in conn.execute(
                        sql.SQL("SELECT name, checksum FROM {}").format(table)
                    ).fetchall()
                }
            except psycopg.Error as exc:
                raise MigrationError(
                    f"cannot prepare schema {schema!r} for migrations: {str(exc).strip()}"
                ) from exc
            for migration in migrations:
                if migration.name in done:
                    if done[migration.name] != migration.checksum:
                        log.warning(
                            "migration %s was changed after it was applied; not re-applied",
                            migration.name,
                        )
                    continue
                text = render(migration, schema)
                try:
                    with conn.transaction():
                        conn.execute(text.encode("utf-8"))  # no parameters: run as written
                        conn.execute(
                            sql.SQL("INSERT INTO {} (name, checksum) VALUES (%s, %s)").format(
                                table
                            ),
                            (migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(_describe(migration, text, exc)) from exc
                applied_now.append(migration.name)
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(schema),))
    return applied_now
