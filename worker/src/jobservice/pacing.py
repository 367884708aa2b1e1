"""How many jobs a worker claims ahead of its free slots (pure arithmetic, no I/O).

A claim and an outcome write each cost the database a fixed amount on top of their rows (a
round trip, a transaction, a commit): about 300 µs of server CPU, as much as a few dozen rows.
A worker that claims a few jobs at a time pays that fixed cost per few jobs, and so does every
worker of several sharing one queue, each of which sees a fraction of the rate. The automatic
prefetch therefore holds the work of the longer of two claim round trips (so that slots never
wait for a claim) and :data:`CLAIM_PERIOD` at the measured rate (so that a busy worker claims
in large batches: it refills the buffer when half of it is used, about every
``CLAIM_PERIOD / 2``), between one job and two claim batches. Slow jobs get a prefetch of one:
they are not hoarded by one worker while another is idle.
"""

from __future__ import annotations

import math

CLAIM_PERIOD = 0.05
"""Seconds of work (at the measured rate) the automatic prefetch holds at least."""


def auto_prefetch(
    *, concurrency: int, claim_seconds: float, job_seconds: float, claim_batch: int
) -> int:
    """Jobs to hold ahead of free slots (see the module docstring).

    ``job_seconds`` and ``claim_seconds`` are the measured (smoothed) duration of one job and
    of one claim statement; ``concurrency`` slots run jobs at ``concurrency / job_seconds``
    jobs a second while there is work.
    """
    rate = concurrency / max(job_seconds, 1e-6)
    want = rate * max(2.0 * claim_seconds, CLAIM_PERIOD)
    return max(1, min(2 * claim_batch, math.ceil(want)))
