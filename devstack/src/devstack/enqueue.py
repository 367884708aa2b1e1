"""``jobs-dev add``: enqueue a job into the running local stack and watch it to its end."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from jobfn.sqlfiles import QuerySet, load

QUERIES = QuerySet(load("devstack", "enqueue.sql"), "app_jobs", source="enqueue.sql")
"""The queries of ``enqueue.sql``; the stack's migrations create the ``app_jobs`` schema."""


def _conninfo(state_file: Path) -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise SystemExit(
            "jobs-dev add: the stack is not running here (no .cache/dev/stack.json); "
            "start it with `make up`, or set DATABASE_URL"
        ) from None
    return str(state["conninfo"])


def add_and_watch(
    task: str,
    payload: str,
    *,
    database_id: str,
    max_attempts: int,
    wait: bool,
    timeout: float,
    state_file: Path,
) -> int:
    """Enqueue ``task`` with ``payload``; with ``wait``, print its progress until it ends.

    Exit status: 0 completed (or enqueued without waiting), 1 failed, 2 still pending.
    """
    try:
        json.loads(payload)
    except json.JSONDecodeError as exc:
        print(f"jobs-dev add: payload is not valid JSON: {exc}", file=sys.stderr)
        return 2
    with psycopg.connect(_conninfo(state_file), autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute(
            QUERIES["add_job"],
            {
                "database_id": database_id,
                "task": task,
                "payload": payload,
                "max_attempts": max_attempts,
            },
        ).fetchone()
        assert row is not None
        job_id = int(row["id"])
        print(f"job {job_id} ({task}) queued", flush=True)
        if not wait:
            return 0
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            status = conn.execute(QUERIES["job_status"], {"job_id": job_id}).fetchone()
            if status is not None:
                seen = (status["status"], status["attempts"], status["last_error"])
                if seen != last:
                    last = seen
                    line = f"job {job_id}: {status['status']} (attempt {status['attempts']}"
                    line += f"/{status['max_attempts']})"
                    if status["last_error"]:
                        line += f": {status['last_error']}"
                    print(line, flush=True)
                if status["status"] == "completed":
                    if status["result"] is not None:
                        print(f"result: {json.dumps(status['result'])}", flush=True)
                    return 0
                if status["status"] == "failed":
                    return 1
            time.sleep(0.2)
    print(f"job {job_id}: still pending after {timeout} s", flush=True)
    return 2
