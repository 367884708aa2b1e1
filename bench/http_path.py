"""``python -m bench.http_path``: what HTTP dispatch costs per job, without the database.

The worker's side of an HTTP dispatch (:class:`jobservice.transport.HttpTransport`: headers,
signature, the request, reading the reply, the verdict) runs in this process on uvloop, as
in ``jobs worker``; the function is a ``jobfn serve bench.noop:noop`` subprocess (uvicorn),
which checks each signature. ``--concurrency`` jobs are in flight at once (the benchmark's
``ours-http`` worker runs 50). Printed per round: jobs/s, and CPU microseconds per job of this
process (the worker side) and of the function server (``/proc/<pid>/stat``, user + system);
then the best of the rounds (other load on the machine only ever adds).

No PostgreSQL is involved, so the figures isolate the HTTP path: the full drain is
``python -m bench compare --peers ours-http``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import dataclass

import uvloop

from bench.harness import BIN, SIGNING_SECRET, free_port, started
from bench.probe import process_cpu_seconds
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch, HttpTransport
from jobservice.verdict import Kind

PAYLOAD = b'{"to":"someone@example.com","subject":"hello"}'
DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"


@dataclass(frozen=True)
class Round:
    """One measured round."""

    rate: float
    worker_us: float
    function_us: float


def _jobs(n: int, start: int) -> list[ClaimedJob]:
    return [
        ClaimedJob(
            id=start + i,
            task="noop",
            payload=PAYLOAD,
            database_id=DATABASE_ID,
            actor_id=None,
            attempts=1,
            max_attempts=25,
        )
        for i in range(n)
    ]


async def _drive(transport: HttpTransport, jobs: list[ClaimedJob], concurrency: int) -> None:
    queue = iter(jobs)

    async def lane() -> None:
        for job in queue:
            result = await transport.run(job)
            if result.kind is not Kind.COMPLETED:
                raise RuntimeError(f"job {job.id}: {result}")

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def _rounds(url: str, server_pid: int, args: argparse.Namespace) -> list[Round]:
    dispatch = Dispatch(
        worker_id=f"bench-{uuid.uuid4().hex[:8]}",
        callback_url="http://127.0.0.1:9/callback",
        concurrency=args.concurrency,
        timeout_for=lambda task: 30.0,
        signing_secret=SIGNING_SECRET,
    )
    await dispatch.start()
    transport = HttpTransport(url, dispatch)
    rounds: list[Round] = []
    try:
        await _drive(transport, _jobs(args.warm_up, 0), args.concurrency)
        for index in range(args.rounds):
            jobs = _jobs(args.jobs, (index + 1) * args.jobs)
            server_before = process_cpu_seconds(server_pid) or 0.0
            cpu_before = time.process_time()
            wall_before = time.perf_counter()
            await _drive(transport, jobs, args.concurrency)
            wall = time.perf_counter() - wall_before
            cpu = time.process_time() - cpu_before
            server = (process_cpu_seconds(server_pid) or 0.0) - server_before
            got = Round(args.jobs / wall, cpu / args.jobs * 1e6, server / args.jobs * 1e6)
            rounds.append(got)
            print(
                f"  round {index + 1}: {got.rate:,.0f} jobs/s, worker {got.worker_us:.0f} us/job,"
                f" function {got.function_us:.0f} us/job",
                flush=True,
            )
    finally:
        await dispatch.close()
    return rounds


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.http_path", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per round (20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (3)")
    parser.add_argument("--warm-up", type=int, default=2_000, help="jobs before measuring")
    parser.add_argument("--concurrency", type=int, default=50, help="jobs in flight (50)")
    parser.add_argument(
        "--function", default="bench.noop:noop", help="the job function to serve (bench.noop:noop)"
    )
    args = parser.parse_args(argv)
    port = free_port()
    env = {
        "PORT": str(port),
        "JOBS_SIGNING_SECRET": SIGNING_SECRET,
        "PYTHONPATH": os.getcwd(),
    }
    with started(
        [str(BIN / "jobfn"), "serve", args.function, "--host", "127.0.0.1"],
        env,
        f"http://127.0.0.1:{port}/health/readiness",
    ) as server:
        rounds = uvloop.run(_rounds(f"http://127.0.0.1:{port}/", server.popen.pid, args))
    best = max(rounds, key=lambda r: r.rate)
    print(
        f"best rate {best.rate:,.0f} jobs/s; least CPU per job: worker"
        f" {min(r.worker_us for r in rounds):.0f} us, function"
        f" {min(r.function_us for r in rounds):.0f} us (concurrency {args.concurrency})"
    )


if __name__ == "__main__":
    main()
