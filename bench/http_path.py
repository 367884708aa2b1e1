"""``python -m bench.http_path``: what HTTP dispatch costs per job, without the database.

The worker's side of an HTTP dispatch (:class:`jobservice.transport.HttpTransport`: headers,
signature, the request, reading the reply, the verdict) runs in this process on uvloop, as
in ``jobs worker``; the function is a ``jobfn serve bench.noop:noop`` subprocess (uvicorn),
which checks each signature. ``--concurrency`` jobs are in flight at once (the benchmark's
``ours-http`` worker runs 50). Printed per round: jobs/s, and CPU microseconds per job of this
process (the worker side) and of the function server (its threads' ``schedstat``);
then the best of the rounds (other load on the machine only ever adds).

``--servers jobfn,uvicorn`` runs, round after round in turn, the function as ``jobfn serve``
serves it (``jobfn``) and under uvicorn's own defaults (``uvicorn``: its ``httptools``
protocol, proxy headers, the app through the function object), the same JSON logs at INFO:
what ``jobfn serve``'s own settings buy, measured side by side on a noisy machine;
``jobfn-quiet`` is ``jobfn serve --log-level warning`` (no line per job).

No PostgreSQL is involved, so the figures isolate the HTTP path: the full drain is
``python -m bench compare --peers ours-http``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import uvloop

from bench.harness import BIN, SIGNING_SECRET, Process, free_port, started
from bench.probe import process_cpu_seconds
from jobservice.claimed_job import ClaimedJob
from jobservice.transport import Dispatch, HttpTransport
from jobservice.verdict import Kind

PAYLOAD = b'{"to":"someone@example.com","subject":"hello"}'
DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
UVICORN_DEFAULTS = """
import sys, uvicorn
from jobfn import json_logs
from jobfn.cli import load_target
json_logs.configure("INFO")
fn = load_target(sys.argv[1])
fn.start()
uvicorn.run(fn, host="127.0.0.1", port=int(sys.argv[2]), lifespan="on", log_config=None,
            access_log=False, server_header=False)
"""
"""The function under uvicorn's own defaults (``--servers uvicorn``)."""


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


async def _rounds(
    servers: dict[str, tuple[str, int]], args: argparse.Namespace
) -> dict[str, list[Round]]:
    transports: dict[str, HttpTransport] = {}
    dispatches: list[Dispatch] = []
    rounds: dict[str, list[Round]] = {name: [] for name in servers}
    try:
        for name, (url, _) in servers.items():
            dispatch = Dispatch(
                worker_id=f"bench-{uuid.uuid4().hex[:8]}",
                callback_url="http://127.0.0.1:9/callback",
                concurrency=args.concurrency,
                timeout_for=lambda task: 30.0,
                signing_secret=SIGNING_SECRET,
            )
            dispatches.append(dispatch)
            await dispatch.start()
            transports[name] = HttpTransport(url, dispatch)
            await _drive(transports[name], _jobs(args.warm_up, 0), args.concurrency)
        for index in range(args.rounds):
            for name, (_, server_pid) in servers.items():
                jobs = _jobs(args.jobs, (index + 1) * args.jobs)
                server_before = process_cpu_seconds(server_pid) or 0.0
                cpu_before = time.process_time()
                wall_before = time.perf_counter()
                await _drive(transports[name], jobs, args.concurrency)
                wall = time.perf_counter() - wall_before
                cpu = time.process_time() - cpu_before
                server = (process_cpu_seconds(server_pid) or 0.0) - server_before
                got = Round(args.jobs / wall, cpu / args.jobs * 1e6, server / args.jobs * 1e6)
                rounds[name].append(got)
                print(
                    f"  round {index + 1} {name}: {got.rate:,.0f} jobs/s, worker"
                    f" {got.worker_us:.0f} us/job, function {got.function_us:.0f} us/job",
                    flush=True,
                )
    finally:
        for dispatch in dispatches:
            await dispatch.close()
    return rounds


@contextmanager
def _server(kind: str, function: str) -> Iterator[tuple[str, Process]]:
    port = free_port()
    env = {"PORT": str(port), "JOBS_SIGNING_SECRET": SIGNING_SECRET, "PYTHONPATH": os.getcwd()}
    if kind == "jobfn":
        argv = [str(BIN / "jobfn"), "serve", function, "--host", "127.0.0.1"]
    elif kind == "jobfn-quiet":
        argv = [
            str(BIN / "jobfn"),
            "serve",
            function,
            "--host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ]
    elif kind == "uvicorn":
        argv = [sys.executable, "-c", UVICORN_DEFAULTS, function, str(port)]
    else:
        raise SystemExit(f"unknown server {kind!r} (jobfn, jobfn-quiet, uvicorn)")
    with started(argv, env, f"http://127.0.0.1:{port}/health/readiness") as process:
        yield f"http://127.0.0.1:{port}/", process


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
    parser.add_argument(
        "--servers",
        default="jobfn",
        help="function servers, in turn: jobfn, jobfn-quiet, uvicorn (jobfn)",
    )
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        servers: dict[str, tuple[str, int]] = {}
        for kind in args.servers.split(","):
            url, process = stack.enter_context(_server(kind, args.function))
            servers[kind] = (url, process.popen.pid)
        results = uvloop.run(_rounds(servers, args))
    for name, rounds in results.items():
        best = max(rounds, key=lambda r: r.rate)
        print(
            f"{name}: best rate {best.rate:,.0f} jobs/s; least CPU per job: worker"
            f" {min(r.worker_us for r in rounds):.0f} us, function"
            f" {min(r.function_us for r in rounds):.0f} us (concurrency {args.concurrency})"
        )


if __name__ == "__main__":
    main()
