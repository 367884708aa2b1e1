"""``jobs migrate``: apply the numbered migrations of ``sql/migrations`` (placeholder)."""

from __future__ import annotations


class MigrationError(Exception):
    """A migration could not be applied."""


def migrate(conninfo: str, *, schema: str = "app_jobs") -> list[str]:
    """Apply pending migrations; return the names applied."""
    raise MigrationError("not built yet")
