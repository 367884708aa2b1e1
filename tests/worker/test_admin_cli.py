"""The operator commands of `jobs`, called in process (``main``) against a real PostgreSQL: add
(and --wait), status, list, retry, cancel, prune, stats; bad input gets one line naming the
argument and exit status 2. tests/ops/test_cli.py drives the console script in depth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from jobservice.cli import main

DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
WORKER = "tester-1"


@pytest.fixture(autouse=True)
def database(db_conninfo: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_conninfo)
    monkeypatch.delenv("JOBS_SCHEMA", raising=False)
    return db_conninfo


def _add(capsys: pytest.CaptureFixture[str], *args: str) -> int:
    assert main(["add", *args]) == 0
    out = capsys.readouterr().out
    return int(out.split()[1])


def _claim(conninfo: str) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM app_jobs.claim_jobs(%s, NULL, '4 hours', 10)", [WORKER]
        ).fetchall()
    return [int(row[0]) for row in rows]


def _fail(conninfo: str, job_id: int, message: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "SELECT * FROM app_jobs.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], ARRAY[false])",
            [WORKER, job_id, message],
        )


def _complete(conninfo: str, job_id: int) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "SELECT app_jobs.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY['{\"ok\": 1}'::json])",
            [WORKER, job_id],
        )


def test_add_then_status_shows_the_queued_job(capsys: pytest.CaptureFixture[str]) -> None:
    job_id = _add(capsys, "report", '{"month": 11}', "--db-id", DB, "--priority", "3")

    assert main(["status", str(job_id), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "queued"
    assert status["task"] == "report"
    assert status["attempts"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "{not json", "--db-id", DB], "jobs add: --payload: expected JSON"),
        (
            ["report", "{}", "--db-id", "nope"],
            "jobs add: --database-id: expected a UUID (got 'nope')",
        ),
        (
            ["report", "{}", "--db-id", DB, "--run-at", "2030-01-01T10:00"],
            "jobs add: --run-at: expected a time zone",
        ),
        (
            ["report", "{}", "--db-id", DB, "--run-at", "tomorrow"],
            "jobs add: --run-at: expected an ISO 8601 date-time (got 'tomorrow')",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(
    capsys: pytest.CaptureFixture[str], database: str, args: list[str], message: str
) -> None:
    assert main(["add", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(message)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM app_jobs.jobs").fetchone() == (0,)


@pytest.mark.parametrize(
    ("settle", "code", "word"), [("complete", 0, "completed"), ("fail", 1, "failed")]
)
def test_add_wait_follows_the_job_to_its_end(
    capsys: pytest.CaptureFixture[str], database: str, settle: str, code: int, word: str
) -> None:
    def worker() -> None:
        for _ in range(2000):
            claimed = _claim(database)
            if claimed:
                if settle == "complete":
                    _complete(database, claimed[0])
                else:
                    _fail(database, claimed[0], "boom")
                return
            threading.Event().wait(0.01)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        result = main(["add", "report", "{}", "--db-id", DB, "--wait", "--timeout", "30"])
    finally:
        thread.join(30)
    out = capsys.readouterr().out
    assert result == code, out
    assert f": {word} (attempt 1/25)" in out
    if settle == "fail":
        assert "boom" in out


def test_list_cancel_retry_and_prune(capsys: pytest.CaptureFixture[str], database: str) -> None:
    queued = _add(capsys, "report", "{}", "--db-id", DB)
    running = _add(capsys, "export", "{}", "--db-id", DB, "--run-at", "2000-01-01T00:00:00Z")
    claimed = _claim(database)
    assert set(claimed) == {queued, running}
    _fail(database, queued, "the printer is on fire")

    assert main(["list", "--failed"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "task", "status"]
    assert [line.split()[:3] for line in table[1:]] == [[str(queued), "report", "failed"]]
    assert table[1].endswith("the printer is on fire")
    assert main(["list", "--running", "--json"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)] == [running]

    assert main(["retry", str(queued)]) == 0
    assert f"job {queued}: queued again" in capsys.readouterr().out
    assert main(["retry", str(queued)]) == 1
    assert "not failed or cancelled (is queued)" in capsys.readouterr().out

    assert main(["cancel", str(queued), "--message", "not needed"]) == 0
    assert f"job {queued}: cancelled" in capsys.readouterr().out
    assert main(["cancel", str(running)]) == 1
    assert "not cancelled (is running)" in capsys.readouterr().out

    assert main(["list", "--cancelled", "--json"]) == 0
    [cancelled] = json.loads(capsys.readouterr().out)
    assert cancelled["id"] == queued
    assert cancelled["last_error"] == "not needed"

    assert main(["prune", "--older-than", "1d"]) == 0
    assert "pruned 0 finished jobs" in capsys.readouterr().out
    assert main(["prune", "--older-than", "0s"]) == 0
    assert "pruned 1 finished jobs" in capsys.readouterr().out
    assert main(["prune", "--older-than", "a week"]) == 2
    assert "--older-than: expected a duration" in capsys.readouterr().err


def test_stats_counts_by_task(capsys: pytest.CaptureFixture[str], database: str) -> None:
    done = _add(capsys, "report", "{}", "--db-id", DB)
    _add(capsys, "report", "{}", "--db-id", DB, "--run-at", "2099-01-01T00:00:00Z")
    _add(capsys, "export", "{}", "--db-id", DB, "--run-at", "2099-01-01T00:00:00Z")
    assert _claim(database) == [done]
    _complete(database, done)

    assert main(["stats", "--json"]) == 0
    stats = {row["task"]: row for row in json.loads(capsys.readouterr().out)}
    assert stats["report"]["completed_1h"] == 1
    assert stats["report"]["scheduled"] == 1
    assert stats["export"]["scheduled"] == 1
    assert stats["export"]["completed_1h"] == 0


def test_the_console_script_reads_the_environment(database: str) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jobs"), "stats"],
        env={**os.environ, "DATABASE_URL": database},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no jobs"
