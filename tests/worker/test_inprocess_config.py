"""A function run in-process that refuses its own configuration stops `jobs worker` in one line."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.worker.conftest import Tools

MAIL_VARIABLES = ("MAILGUN_API_KEY", "MAILGUN_KEY", "EMAIL_SEND_USE_SMTP", "SIMPLE_EMAIL_DRY_RUN")


async def _worker_with(tools: Tools, **extra: str) -> tuple[int | None, list[str]]:
    base = {k: v for k, v in os.environ.items() if k not in MAIL_VARIABLES}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobservice.cli",
        "worker",
        env={**base, **tools.env(**extra)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, err.decode().splitlines()


async def test_missing_mail_settings_of_an_in_process_function_stop_the_worker(
    tools: Tools,
) -> None:
    code, lines = await _worker_with(
        tools, JOBS_INPROCESS='{"simple-email": "simple_email:simple_email"}'
    )

    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("jobs worker: JOBS_INPROCESS: expected a function that can start")
    assert "MAILGUN_API_KEY" in lines[0]
