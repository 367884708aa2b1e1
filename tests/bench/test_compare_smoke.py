"""``python -m bench compare`` and ``python -m bench sqlpath`` run end to end at tiny sizes.

No timing is asserted: these check that every scenario runs against real processes and that
the table reports a figure for each. graphile-worker needs npm and a download, so its run is
behind ``BENCH_GRAPHILE=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench.harness import ROOT
from bench.run import latency

QUICK = ["--sizes", "300", "--processes", "1,2", "--process-jobs", "300"]


def _bench(args: list[str], conninfo: str, timeout: float = 110) -> str:
    env = {**os.environ, "DATABASE_URL": conninfo}
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _row(output: str, label: str) -> list[str]:
    line = next((ln for ln in output.splitlines() if ln.startswith(label)), None)
    assert line is not None, f"{label!r} missing from:\n{output}"
    return [cell.strip() for cell in line.split("|")[1:]]


def test_compare_measures_ours_beside_pgqueuer_in_one_table(pg_admin_conninfo: str) -> None:
    out = _bench(
        [
            "compare",
            "--peers",
            "ours,pgqueuer",
            "--sizes",
            "3000,6000",
            "--processes",
            "1,2",
            "--process-jobs",
            "3000",
            "--enqueue",
            "300",
            "--single",
            "10",
            "--latency",
            "3",
        ],
        pg_admin_conninfo,
    )
    header = _row(out, "figure")
    assert header == ["ours", "pgqueuer", "ours/pgqueuer"]
    # At 3,000 jobs (a fast drain of a few hundred can end between two of the poller's
    # samples) the first of two workers may drain most of the queue before the second is
    # ready: that drain is then reported as failed ("use more jobs"), not given a wrong rate.
    two = _row(out, "drain 3,000 queued, 2 processes")
    for cell in two[:2]:
        assert cell[0].isdigit() or (cell == "-" and "use more jobs" in out), (two, out)
    for label in (
        "drain 3,000 queued, 1 process",
        "  PostgreSQL CPU per job",
        "  worker peak memory",
        "enqueue batched",
        "enqueue one per transaction",
        "latency enqueue -> handler p50",
        "latency enqueue -> handler p99",
    ):
        ours, peer, ratio = _row(out, label)
        assert ours[0].isdigit(), (label, ours)
        assert peer[0].isdigit(), (label, peer)
        assert ratio.endswith("x"), (label, ratio)
    # enqueue through our client library too, for ours only; server CPU where it is measured
    assert _row(out, "enqueue batched via client")[0][0].isdigit()
    assert _row(out, "enqueue batched via client")[1] == "-"
    lines = out.splitlines()
    batched = next(i for i, ln in enumerate(lines) if ln.startswith("enqueue batched,"))
    label, ours, peer, _ratio = (cell.strip() for cell in lines[batched + 1].split("|"))
    assert label == "PostgreSQL CPU per job (us)", lines[batched + 1]
    assert float(ours.replace(",", "")) > 0, lines[batched + 1]
    assert peer == "-"  # pgqueuer enqueues on a connection of its own
    # how each queue's rate holds up from the smallest to the largest backlog
    ours, peer, _ratio = _row(out, "drain rate 6,000 / 3,000 queued")
    assert float(ours) > 0, out
    assert float(peer) > 0, out
    # the workers run the function: no separate function CPU
    assert not any(ln.startswith("  function CPU") for ln in out.splitlines()), out


def test_compare_runs_http_dispatch(pg_admin_conninfo: str) -> None:
    out = _bench(
        [
            "compare",
            "--peers",
            "ours-http",
            "--sizes",
            "3000",
            "--processes",
            "",
            "--enqueue",
            "0",
            "--latency",
            "3",
        ],
        pg_admin_conninfo,
    )
    assert _row(out, "drain 3,000 queued, 1 process")[0][0].isdigit()
    # the function server (jobfn serve) spends CPU of its own on every job, reported apart
    # (3,000 jobs: a drain of a few hundred can end before the poller's second sample)
    assert float(_row(out, "  function CPU per job (us)")[0].replace(",", "")) > 0, out
    assert float(_row(out, "  worker CPU per job (us)")[0].replace(",", "")) > 0, out
    assert _row(out, "latency enqueue -> handler p50")[0][0].isdigit()
    assert _row(out, "latency enqueue -> handler p99")[0][0].isdigit()


def test_bad_flags_name_the_flag_and_what_was_expected(pg_admin_conninfo: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "compare", "--peers", "ours,sidekiq"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--peers" in result.stderr
    assert "sidekiq" in result.stderr
    assert "ours, ours-http, graphile, pgqueuer" in result.stderr


@pytest.mark.skipif(os.environ.get("BENCH_GRAPHILE") != "1", reason="set BENCH_GRAPHILE=1 (npm)")
def test_compare_installs_and_measures_graphile_worker(pg_admin_conninfo: str) -> None:
    out = _bench(
        [
            "compare",
            "--peers",
            "ours,graphile",
            *QUICK,
            "--enqueue",
            "300",
            "--single",
            "10",
            "--latency",
            "3",
        ],
        pg_admin_conninfo,
        timeout=600,
    )
    _ours, peer, ratio = _row(out, "drain 300 queued, 1 process")
    assert peer[0].isdigit()
    assert ratio.endswith("x")


def test_sqlpath_splits_the_server_cpu_per_job(pg_admin_conninfo: str) -> None:
    out = _bench(
        ["sqlpath", "--backlog", "200", "--jobs", "200", "--repeat", "1"], pg_admin_conninfo
    )
    for label in ("enqueue", "claim", "complete", "claim+complete"):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(label + " "))
        assert float(line.split()[1]) > 0, line


def test_latency_creates_the_folder_of_its_stamp_file(db_conninfo: str, tmp_path: Path) -> None:
    # A fresh clone has no .cache/ folder: the stamp file's folder must be created.
    stamp_file = tmp_path / "not-there-yet" / "bench-stamps.txt"
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        samples = latency(db_conninfo, conn, 2, stamp_file)
    assert len(samples) == 2
    assert all(sample > 0 for sample in samples)
