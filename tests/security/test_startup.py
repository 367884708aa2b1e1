"""Secure by default at start-up: no secret, no service (unless insecure is asked for, loudly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.security.conftest import Db, StartService, Wire

BIN = Path(sys.executable).parent


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "PG", "INTERNAL_"))}
    done = subprocess.run(
        argv, env={**base, **env}, capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("secret_env", "variable"),
    [
        ({}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET": "too-short"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET": "change-me-to-a-long-random-string"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET_FILE": "/nonexistent/jobs-secret"}, "JOBS_SIGNING_SECRET_FILE"),
    ],
)
def test_jobs_worker_refuses_to_start_without_a_real_secret(
    db_conninfo: str, secret_env: dict[str, str], variable: str
) -> None:
    code, err = _run(
        [str(BIN / "jobs"), "worker"],
        {"DATABASE_URL": db_conninfo, "HOSTNAME": "sec-worker-1", **secret_env},
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"jobs worker: {variable}: expected ")
    for value in secret_env.values():
        if not value.startswith("/"):
            assert value not in err  # the secret itself is never printed


def test_insecure_callbacks_is_explicit_loud_and_visible_in_metrics(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = job_service(
        JOBS_SIGNING_SECRET="", JOBS_INSECURE_CALLBACKS="true", JOBS_WORKER_ENABLED="false"
    )
    assert "JOBS_INSECURE_CALLBACKS=true" in service.output()
    metrics = httpx.get(f"{service.base}/metrics", timeout=10).text
    assert "jobs_insecure_callbacks 1.0" in metrics
    # What it opens: an unsigned callback (the reference Node functions') settles the job.
    db.add("reference-fn")
    job_id, _ = db.claim("sec-worker-1", "reference-fn")
    body = b'{"status": "success"}'
    headers = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=None,
        url=service.callback_url,
        body=body,
        secret=None,
    )
    assert wire.post(service.callback_url, body, headers).status_code == 200
    assert db.history(job_id) is not None


def test_a_secure_service_shows_zero_in_the_insecure_gauge(job_service: StartService) -> None:
    service = job_service(JOBS_WORKER_ENABLED="false")
    assert "jobs_insecure_callbacks 0.0" in httpx.get(f"{service.base}/metrics", timeout=10).text


def test_jobfn_serve_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    (tmp_path / "sec_plain.py").write_text(
        "from jobfn import job_function\n\n\n@job_function\ndef plain() -> None: ...\n"
    )
    code, err = _run(
        [str(BIN / "jobfn"), "serve", "sec_plain", "--port", "1"],
        {"JOBS_SIGNING_SECRET": "change-me-please-this-is-long-enough-but-a-placeholder"},
        cwd=tmp_path,
    )
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("jobfn serve: JOBS_SIGNING_SECRET: expected ")
