"""The parts of the chaos runs: a PostgreSQL cluster of the test's own that can be stopped and
restarted, a real function server with the five behaviours, real ``jobs worker`` processes,
and the bookkeeping that turns what happened into figures and verdicts.

Nothing here imitates a component of the project: the workers are ``python -m jobservice.cli
worker`` subprocesses, the database is a real PostgreSQL (the ``pgserver`` wheel's binaries, or
the system's), the function server is a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import hmac
import importlib.util
import itertools
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import ClientError, ClientSession, ClientTimeout, web

SECRET = "5f0c3e1a9b7d4c2e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d0e"
"""The signing secret of the chaos workers and function (64 hex characters)."""

DB_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
KINDS = ("fast", "flaky", "hang", "callback", "slow")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- PostgreSQL ------------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    """The directory of ``initdb``/``pg_ctl``: the ``pgserver`` wheel's, else the system's."""
    spec = importlib.util.find_spec("pgserver")  # located, not imported (it warns on import)
    if spec is not None and spec.origin is not None:
        wheel_bin = Path(spec.origin).parent / "pginstall" / "bin"
        if (wheel_bin / "pg_ctl").exists():
            return wheel_bin
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found is None:
        raise RuntimeError("no PostgreSQL binaries (pgserver wheel or pg_ctl on PATH)")
    return Path(found).parent


class PgCluster:
    """A PostgreSQL cluster in a temporary directory, on 127.0.0.1, that tests stop and start.

    PostgreSQL refuses to run as root: under root the cluster belongs to an unprivileged
    system user (``pgserver``, as the wheel does, or ``postgres``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.bin = pg_bin_dir()
        self.user: str | None = None
        if os.geteuid() == 0:
            for name in ("pgserver", "postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                break

    @property
    def admin_conninfo(self) -> str:
        """The ``postgres`` database as the superuser ``postgres``."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def conninfo(self, dbname: str) -> str:
        """Database ``dbname`` of this cluster."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        kwargs: dict[str, Any] = {"user": self.user} if self.user is not None else {}
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            cwd=self.root,
            **kwargs,
        )

    def init(self) -> None:
        """``initdb`` (trust authentication; no fsync: the tests crash PostgreSQL, never the
        machine, so what it wrote to the kernel survives; commits stay synchronous)."""
        self.root.chmod(0o755)
        self.data.mkdir()
        self.log.touch()
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.data, info.pw_uid, info.pw_gid)
            os.chown(self.log, info.pw_uid, info.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off "
            "-c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: abort transactions; ``immediate``: crash-like)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def cleanup(self) -> None:
        """Stop the server if it runs and remove its files."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    """A started cluster of this test's own (removed afterwards)."""
    cluster = PgCluster(Path(tempfile.mkdtemp(prefix="jobs-chaos-pg-")))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


def create_jobs_database(cluster: PgCluster, name: str = "jobs") -> str:
    """Create and migrate a database on ``cluster``; its conninfo."""
    from jobservice.migrate import migrate

    with psycopg.connect(cluster.admin_conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    conninfo = cluster.conninfo(name)
    migrate(conninfo)
    return conninfo


# -- the function server -------------------------------------------------------------------


@dataclass
class Delivery:
    """One request the function server received."""

    job_id: int
    attempt: int
    worker: str
    task: str
    start: float
    end: float | None = None
    result: str = "running"
    """``200``, ``500``, ``202``, ``202-dropped``, ``hung``, ``disconnected``, ``stopped``."""
    callback: str = ""
    """The answer to the callback of a ``202`` (status code or error name)."""


@dataclass
class Behaviour:
    """How the chaos function answers (rates are fractions)."""

    error_rate: float = 0.20
    hang_rate: float = 0.05
    hang_seconds: float = 6.0
    drop_callback_rate: float = 0.05
    callback_delay: tuple[float, float] = (0.05, 0.5)
    slow_seconds: tuple[float, float] = (0.2, 1.0)
    hold: asyncio.Event | None = None
    """``hold`` task: answer only once this is set."""


class ChaosFunction:
    """A real HTTP function on 127.0.0.1 with five behaviours, by task (path ``/<task>``):

    ``fast`` answers 200 at once; ``flaky`` answers HTTP 500 at ``error_rate``; ``hang`` hangs
    past the worker's timeout at ``hang_rate``; ``callback`` answers 202 and calls back (success)
    later, dropping ``drop_callback_rate`` of the callbacks; ``slow`` works for a while; ``hold``
    answers once :attr:`Behaviour.hold` is set. Each delivery is recorded with its job, attempt,
    worker and times; a delivery ends when the reply is sent or the worker hangs up.
    """

    def __init__(self, behaviour: Behaviour, *, seed: int = 7) -> None:
        self.behaviour = behaviour
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.deliveries: list[Delivery] = []
        self.callbacks: Counter[str] = Counter()
        self.arrived = asyncio.Event()
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (again) on the same port."""
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=5))
        app = web.Application()
        app.router.add_post("/{task}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening and cut the requests in flight (the function is gone)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        """Stop, and wait for the callbacks still being sent."""
        await self.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers = request.headers
        delivery = Delivery(
            job_id=int(headers["X-Job-Id"]),
            attempt=int(headers.get("X-Job-Attempt", "0")),
            worker=headers["X-Worker-Id"],
            task=request.match_info["task"],
            start=time.time(),
        )
        self.deliveries.append(delivery)
        self.arrived.set()
        await request.read()
        try:
            return await self._answer(request, delivery)
        except asyncio.CancelledError:
            self._end(delivery, "stopped")
            raise

    def _end(self, delivery: Delivery, result: str) -> None:
        if delivery.end is None:
            delivery.end = time.time()
            delivery.result = result

    async def _work(self, request: web.Request, seconds: float) -> bool:
        """Work for ``seconds``; False (and the delivery ends) when the worker hung up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return False
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return True

    async def _answer(self, request: web.Request, d: Delivery) -> web.StreamResponse:
        b, rng = self.behaviour, self._rng
        ok = web.json_response({"complete": True, "result": {"job": d.job_id}})
        if d.task == "flaky" and rng.random() < b.error_rate:
            self._end(d, "500")
            return web.json_response({"error": "flaky function failed"}, status=500)
        if d.task == "hang" and rng.random() < b.hang_rate:
            await self._work(request, b.hang_seconds)
            self._end(d, "hung")
            return ok
        if d.task == "slow" and not await self._work(request, rng.uniform(*b.slow_seconds)):
            self._end(d, "disconnected")
            return ok
        if d.task == "hold" and b.hold is not None:
            while not b.hold.is_set():
                if not await self._work(request, 0.1):
                    self._end(d, "disconnected")
                    return ok
        if d.task == "callback":
            dropped = rng.random() < b.drop_callback_rate
            self._end(d, "202-dropped" if dropped else "202")
            if not dropped:
                delay = rng.uniform(*b.callback_delay)
                task = asyncio.create_task(self._call_back(request, d, delay))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return web.Response(status=202)
        transport = request.transport
        self._end(d, "disconnected" if transport is None or transport.is_closing() else "200")
        return ok

    async def _call_back(self, request: web.Request, d: Delivery, delay: float) -> None:
        await asyncio.sleep(delay)
        headers = request.headers
        url = callback_url(headers["X-Callback-Url"])
        body = json.dumps({"status": "success", "result": {"called": "back"}}).encode()
        out = {
            "Content-Type": "application/json",
            "X-Worker-Id": headers["X-Worker-Id"],
            "X-Job-Id": headers["X-Job-Id"],
            "X-Database-Id": headers.get("X-Database-Id", ""),
            "X-Job-Attempt": headers.get("X-Job-Attempt", ""),
        }
        out["X-Job-Signature"] = sign_callback(out, url, body)
        assert self._session is not None
        for _ in range(4):
            try:
                async with self._session.post(url, data=body, headers=out) as response:
                    self.callbacks[str(response.status)] += 1
                    d.callback = str(response.status)
                    if response.status < 500:
                        return
            except (OSError, TimeoutError, ClientError) as exc:
                self.callbacks[type(exc).__name__] += 1
                d.callback = type(exc).__name__
            await asyncio.sleep(0.5)


def callback_url(url: str) -> str:
    """Where a callback goes (a URL without a path means ``/callback``)."""
    try:
        from jobfn.protocol import callback_endpoint

        return str(callback_endpoint(url))
    except ImportError:
        return url


def sign_callback(headers: dict[str, str], url: str, body: bytes) -> str:
    """``X-Job-Signature`` of a callback, with the SDK's signing scheme."""
    from jobfn import protocol

    now = int(time.time())
    envelope_type = getattr(protocol, "Envelope", None)
    if envelope_type is not None:
        envelope = envelope_type(
            protocol.PURPOSE_CALLBACK,
            headers["X-Worker-Id"],
            headers["X-Job-Id"],
            headers.get("X-Job-Attempt", ""),
            headers.get("X-Database-Id", ""),
            url,
            headers.get("X-Job-Error", ""),
            body,
        )
        return str(protocol.sign(SECRET, envelope, now))
    message = f"{now}.{headers['X-Job-Id']}.".encode() + body  # pragma: no cover
    return f"t={now},v1={hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()}"


# -- worker processes ------------------------------------------------------------------------


@dataclass
class WorkerProc:
    """One ``jobs worker`` process; its JSON logs go to ``log``."""

    worker_id: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.time)


class Workers:
    """Starts, kills and restarts ``jobs worker`` processes; remembers every life event."""

    def __init__(self, conninfo: str, gateway: str, logs: Path, env: dict[str, str]) -> None:
        self.conninfo = conninfo
        self.gateway = gateway
        self.logs = logs
        self.extra = env
        self.live: dict[str, WorkerProc] = {}
        self.events: list[tuple[float, str, str]] = []
        """``(time, "start" | "kill" | "term", worker_id)``."""
        self.exit_codes: list[tuple[str, int]] = []
        self._n = 0

    def start(self, worker_id: str, port: int | None = None) -> WorkerProc:
        port = port or free_port()
        self._n += 1
        log = self.logs / f"{worker_id}.{self._n}.log"
        env = {
            **os.environ,
            "DATABASE_URL": self.conninfo,
            "JOBS_WORKER_ID": worker_id,
            "INTERNAL_GATEWAY_URL": self.gateway,
            "INTERNAL_JOBS_CALLBACK_PORT": str(port),
            "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{port}/callback",
            "JOBS_CALLBACK_BIND": "127.0.0.1",
            "JOBS_SIGNING_SECRET": SECRET,
            "JOBS_SCHEDULER_ENABLED": "false",
            "JOBS_LOG_LEVEL": "INFO",
            **self.extra,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jobservice.cli", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        worker = WorkerProc(worker_id, port, log, proc)
        self.live[worker_id] = worker
        self.events.append((time.time(), "start", worker_id))
        return worker

    def kill(self, worker_id: str) -> WorkerProc:
        worker = self.live.pop(worker_id)
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(30)
        self.events.append((time.time(), "kill", worker_id))
        return worker

    def stop_all(self, within: float) -> None:
        """SIGTERM every live worker and record the exit codes."""
        for worker in self.live.values():
            worker.proc.send_signal(signal.SIGTERM)
            self.events.append((time.time(), "term", worker.worker_id))
        for worker in self.live.values():
            try:
                self.exit_codes.append((worker.worker_id, worker.proc.wait(within)))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(10)
                self.exit_codes.append((worker.worker_id, -9999))
        self.live.clear()

    def kill_all(self) -> None:
        for worker in self.live.values():
            with contextlib.suppress(OSError):
                worker.proc.kill()
            worker.proc.wait(10)
        self.live.clear()

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every worker process, with ``t`` (epoch seconds)."""
        entries: list[dict[str, Any]] = []
        for path in sorted(self.logs.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                stamp = entry.get("time")
                if isinstance(stamp, str):
                    entry["t"] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                entry["file"] = path.name
                entries.append(entry)
        return entries


# -- database helpers ------------------------------------------------------------------------


async def db_retry(conninfo: str, query: str, params: Any = None, *, within: float = 120.0) -> Any:
    """Rows of ``query``, retrying through outages for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=3
            ) as conn:
                cur = await conn.execute(query, params)
                return await cur.fetchall() if cur.description is not None else []
        except (psycopg.OperationalError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def enqueue(conninfo: str, task: str, count: int, *, max_attempts: int) -> list[int]:
    """``count`` jobs of ``task`` in one statement; their ids."""
    rows = await db_retry(
        conninfo,
        "INSERT INTO app_jobs.jobs (database_id, task_identifier, payload, max_attempts)"
        " SELECT %s::uuid, %s, json_build_object('n', i), %s FROM generate_series(1, %s) i"
        " RETURNING id",
        (DB_ID, task, max_attempts, count),
    )
    return [int(r[0]) for r in rows]


async def terminate_backends(cluster: PgCluster, dbname: str) -> int:
    """``pg_terminate_backend`` every connection to ``dbname``; how many."""
    rows = await db_retry(
        cluster.admin_conninfo,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
        within=30,
    )
    return int(rows[0][0])


# -- verdicts --------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What a chaos run ended with; :meth:`figures` is printed, the lists must be empty."""

    enqueued: int = 0
    completed: int = 0
    failed: int = 0
    failed_without_error: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    stuck: list[int] = field(default_factory=list)
    overlaps: list[tuple[int, str, str]] = field(default_factory=list)
    live_rescues: list[tuple[int, str, str, float]] = field(default_factory=list)
    """``(job, dead worker, rescuer, time)``."""
    rescues: int = 0
    deliveries: int = 0
    redeliveries: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    unreachable_logged: int = 0
    breaker_openings: int = 0
    attempts_without_delivery: int = 0
    exit_codes: list[tuple[str, int]] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    chaos_seconds: float = 0.0
    drain_seconds: float | None = None
    drain_runnable_seconds: float | None = None
    callbacks: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    logs: str = ""
    """Where the worker logs are (kept when a check fails)."""
    timeline: list[tuple[float, str]] = field(default_factory=list)
    """``(seconds since the start, fault)``."""
    started: float = 0.0

    @property
    def bad_redeliveries(self) -> int:
        """Re-deliveries that neither a failed attempt nor a SIGKILL explains."""
        return sum(n for cause, n in self.redeliveries.items() if cause.startswith("UNEXPLAINED"))

    def figures(self) -> str:
        lines = [
            f"jobs {self.enqueued}: completed {self.completed}, failed for good {self.failed}"
            f" (without error: {len(self.failed_without_error)}), lost {len(self.lost)},"
            f" stuck {len(self.stuck)}",
            f"chaos {self.chaos_seconds:.0f} s: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items())),
            f"deliveries {self.deliveries}; later deliveries by cause: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.redeliveries.items())) or "none"),
            f"overlapping runs (second worker while the first held it): {len(self.overlaps)}",
            f"rescues {self.rescues}, of live workers {len(self.live_rescues)}"
            + "".join(
                f"\n  live rescue: job {job} of {dead} by {rescuer} at {t - self.started:.1f} s"
                for job, dead, rescuer, t in self.live_rescues[:10]
            ),
            "outcomes refused (job taken away): "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())) or "0"),
            f"unreachable dispatches (no attempt used) {self.unreachable_logged}, breaker"
            f" openings {self.breaker_openings}, attempts used without reaching the function"
            f" {self.attempts_without_delivery}",
            f"callbacks by answer: {dict(self.callbacks)}",
            "drain after the chaos: "
            + (f"{self.drain_runnable_seconds:.1f} s" if self.drain_runnable_seconds else "-")
            + " until nothing runnable or running, "
            + (f"{self.drain_seconds:.1f} s" if self.drain_seconds else "-")
            + " until every job finished",
            f"SIGTERM exit codes: {sorted({code for _, code in self.exit_codes})}",
            *self.unexplained[:5],
        ]
        return "\n".join(lines)


def judge(
    v: Verdict,
    *,
    enqueued: list[int],
    history: list[tuple[int, str, str | None, int]],
    remaining: list[int],
    deliveries: list[Delivery],
    worker_events: list[tuple[float, str, str]],
    logs: list[dict[str, Any]],
) -> Verdict:
    """Fill ``v`` from the database's final state, the deliveries and the worker logs."""
    v.enqueued = len(enqueued)
    finished = {job_id: (status, error, attempts) for job_id, status, error, attempts in history}
    v.completed = sum(1 for s, _, _ in finished.values() if s == "completed")
    v.failed = sum(1 for s, _, _ in finished.values() if s == "failed")
    v.failed_without_error = [j for j, (s, e, _) in finished.items() if s == "failed" and not e]
    left = set(remaining)
    v.stuck = sorted(left)
    v.lost = sorted(j for j in enqueued if j not in finished and j not in left)

    kills: dict[str, list[float]] = defaultdict(list)
    for t, what, worker in worker_events:
        if what == "kill":
            kills[worker].append(t)
    # A process holds jobs from when it registered (its ``worker_started`` line; registering
    # released what a previous process with its id held), not from when it was spawned.
    starts: dict[str, list[float]] = defaultdict(list)
    for entry in logs:
        if entry.get("action") == "worker_started" and "t" in entry:
            starts[str(entry.get("worker_id"))].append(float(entry["t"]))

    def killed_between(worker: str, a: float, b: float) -> bool:
        return any(a <= t <= b for t in kills.get(worker, ()))

    # What the workers said about failed attempts: (job, attempt) → message.
    attempt_failed: dict[tuple[int, int], str] = {}
    for entry in logs:
        action = entry.get("action")
        if action in ("job_attempt_failed", "job_unreachable"):
            key = (int(entry.get("job_id", 0)), int(entry.get("attempt", 0)))
            attempt_failed[key] = f"{action}: {entry.get('message')}"

    by_job: dict[int, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        by_job[d.job_id].append(d)
    v.deliveries = len(deliveries)
    for job_id, ds in by_job.items():
        ds.sort(key=lambda d: d.start)
        for first, second in itertools.pairwise(ds):
            end = first.end if first.end is not None else float("inf")
            if second.start < end and not killed_between(first.worker, first.start, second.start):
                v.overlaps.append((job_id, first.worker, second.worker))
            cause = _cause(first, second, killed_between, attempt_failed)
            v.redeliveries[cause] += 1
            if cause.startswith("UNEXPLAINED"):
                said = [
                    f"{e.get('t', 0) - v.started:.2f} {e.get('file')} {e.get('action')}:"
                    f" {e.get('message')}"
                    for e in logs
                    if e.get("job_id") == job_id
                ]
                v.unexplained.append(
                    f"job {job_id}: {first.worker} {first.start - v.started:.2f}-"
                    f"{(first.end or 0) - v.started:.2f} s ({first.result}), then"
                    f" {second.worker} at {second.start - v.started:.2f} s; logs: {said}"
                )
        status = finished.get(job_id)
        if status is not None and status[2] > len(ds):
            v.attempts_without_delivery += status[2] - len(ds)

    for entry in logs:
        action = entry.get("action")
        if action == "job_rescued":
            v.rescues += 1
            dead = str(entry.get("dead_worker_id"))
            t = float(entry.get("t", 0.0))
            last = max(
                [(x, "kill") for x in kills.get(dead, []) if x <= t]
                + [(x, "start") for x in starts.get(dead, []) if x <= t],
                default=(0.0, "none"),
            )
            if last[1] != "kill":
                v.live_rescues.append(
                    (int(entry.get("job_id", 0)), dead, str(entry.get("worker_id")), t)
                )
        elif action == "outcome_refused":
            v.refused[str(entry.get("outcome"))] += 1
        elif action == "breaker_opened":
            v.breaker_openings += 1
    v.unreachable_logged = sum(1 for e in logs if e.get("action") == "job_unreachable")
    return v


def _cause(
    first: Delivery,
    second: Delivery,
    killed_between: Any,
    attempt_failed: dict[tuple[int, int], str],
) -> str:
    if first.result == "500":
        return "retry after HTTP 500"
    if first.result == "hung":
        return "retry after timeout"
    if first.result == "202-dropped":
        return "retry after a lost callback"
    if killed_between(first.worker, first.start, second.start):
        return "after SIGKILL of its worker"
    if first.result == "stopped":
        return "retry after the function server stopped"
    said = attempt_failed.get((first.job_id, first.attempt))
    if said is not None:
        kind = (
            "timeout"
            if "timed out" in said
            else "unreachable"
            if said.startswith("job_unreachable")
            else "error"
        )
        return f"retry after a failed attempt the worker logged ({kind})"
    if first.result == "disconnected":
        return "retry after the worker's timeout"
    if first.result == "202" and first.callback != "200":
        return f"retry after an undelivered callback ({first.callback})"
    return f"UNEXPLAINED after {first.result}"
