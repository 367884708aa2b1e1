"""The job functions the benchmark runs: a no-op, and one that records when it started."""

from __future__ import annotations

import os
import time

from jobfn import JobContext, job_function


@job_function(name="noop")
async def noop(payload: dict[str, object]) -> None:
    """Do nothing: what is measured is the queue's own overhead."""


@job_function(name="stamp")
async def stamp(ctx: JobContext) -> None:
    """Append ``<job id> <time.time_ns()>`` to ``$BENCH_STAMP_FILE`` as the handler starts."""
    started = time.time_ns()
    # A tiny append; a thread hop would add to the latency being measured.
    with open(os.environ["BENCH_STAMP_FILE"], "a", encoding="ascii") as out:  # noqa: ASYNC230
        out.write(f"{ctx.job_id} {started}\n")
