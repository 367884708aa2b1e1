"""The benchmark runs end to end at a tiny size and prints every figure (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_prints_every_figure(pg_admin_conninfo: str) -> None:
    env = {**os.environ, "DATABASE_URL": pg_admin_conninfo}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--jobs", "200", "--single", "20", "--latency-jobs", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for figure in (
        "drain in-process, best",
        "drain HTTP, best",
        "enqueue batched",
        "enqueue one at a time",
        "latency add_job -> start p50",
        "latency add_job -> start p99",
        "worker peak memory",
    ):
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith(figure)), None)
        assert line is not None, f"{figure!r} missing from:\n{result.stdout}"
        value = line.split("|")[1].strip()
        assert value[0].isdigit(), line
