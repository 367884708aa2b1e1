"""What the SQL tests share: a tenant's database id and ``add`` (``app_jobs.add_job``).

Imported as ``sqljobs`` (pytest puts this folder on ``sys.path``; mypy finds it through
``mypy_path``).
"""

from __future__ import annotations

import psycopg

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
Conn = psycopg.Connection[dict[str, object]]


def add(db: Conn, task: str = "task", **kwargs: object) -> int:
    """``add_job`` for ``DB_ID`` with ``kwargs`` as named arguments; returns the job id."""
    names = "".join(f", {k} := %({k})s" for k in kwargs)
    row = db.execute(
        f"SELECT id FROM app_jobs.add_job(db_id := %(db)s::uuid, identifier := %(task)s{names})",
        {"db": DB_ID, "task": task, **kwargs},
    ).fetchone()
    assert row is not None
    return int(str(row["id"]))
