"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright): sign
in with the token, a job added with SQL appears without a reload, its progress bar moves, and
the retry button re-queues a failed job. Screenshots go to ``.cache/screenshots/``."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = Path(__file__).with_name("install_chromium.sh")
SHOTS = ROOT / ".cache" / "screenshots"
TOKEN = "ops-test-token-0123456789abcdefghijk"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium, installed by ``install_chromium.sh`` when missing (else skip)."""
    if not CHROMIUM.exists():
        result = subprocess.run(
            ["sh", str(INSTALL)], capture_output=True, text=True, timeout=900, check=False
        )
        if result.returncode != 0 or not CHROMIUM.exists():
            reason = (result.stderr.strip().splitlines() or ["install failed"])[-1]
            pytest.skip(f"chromium is not installed and could not be installed: {reason}")
    return CHROMIUM


def eventually(check: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Wait (bounded) until ``check()`` holds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_dashboard_updates_live_and_retries(chromium: Path, token_server: Any, sql: Any) -> None:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    sql.rows(
        "SELECT app_jobs.add_scheduled_job('5b720132-17d5-424d-9bcb-ee7b17c13d43'::uuid,"
        " 'nightly-digest', '{}'::json, '{\"rule\": \"0 2 * * *\"}'::json)"
    )
    earlier = sql.add("report")
    sql.claim()
    sql.complete(earlier)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{token_server.url}/dashboard")
            page.wait_for_selector("input[name=token]", timeout=WAIT_MS)
            page.screenshot(path=str(SHOTS / "dashboard-login.png"))
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_selector("#live.on", timeout=WAIT_MS)
            page.evaluate("window.notReloaded = true")
            assert page.inner_text("#count-completed") == "1"

            job_id = sql.add("thumbnails", '{"album": 7}')
            page.wait_for_selector(f'#recent tr[data-job="{job_id}"]', timeout=WAIT_MS)
            assert sql.claim() == [job_id]
            page.wait_for_selector(f'#running tr[data-job="{job_id}"]', timeout=WAIT_MS)
            bar = f'progress[data-job-progress="{job_id}"]'
            sql.progress(job_id, 30, "30 of 100 images")
            page.wait_for_selector(f'{bar}[value="30"]', timeout=WAIT_MS)
            sql.progress(job_id, 70, "70 of 100 images")
            page.wait_for_selector(f'{bar}[value="70"]', timeout=WAIT_MS)
            assert "70 of 100 images" in page.inner_text(f'#running tr[data-job="{job_id}"]')
            page.wait_for_selector('#count-running:text-is("1")', timeout=WAIT_MS)
            page.screenshot(path=str(SHOTS / "dashboard-running.png"), full_page=True)

            sql.fail(job_id, "image 71 is corrupt")
            row = f'#failed tr[data-job="{job_id}"]'
            page.wait_for_selector(row, timeout=WAIT_MS)
            assert "image 71 is corrupt" in page.inner_text(row)
            page.wait_for_selector('#count-failed:text-is("1")', timeout=WAIT_MS)
            page.screenshot(path=str(SHOTS / "dashboard-failed.png"), full_page=True)
            page.click(f'button[data-retry="{job_id}"]')
            eventually(lambda: sql.status(job_id) == "queued", "the job to be queued again")
            page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
            page.wait_for_selector(
                f'#recent tr[data-job="{job_id}"][data-status="queued"]', timeout=WAIT_MS
            )
            assert "nightly-digest" in page.inner_text("#schedules")
            assert page.evaluate("window.notReloaded") is True
            page.screenshot(path=str(SHOTS / "dashboard-retried.png"), full_page=True)
        finally:
            browser.close()
    assert shutil.which(str(chromium)) is not None
