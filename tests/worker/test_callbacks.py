"""The callback server (the callback protocol): signature, 404/409/401/400, idempotence,
results, errors, progress, health and metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from jobfn import protocol

if TYPE_CHECKING:
    from tests.worker.conftest import JobsDb, Tools

SECRET = "callback-secret-0123456789abcdef0123456789"


class Client:
    """Posts callbacks to the running callback server."""

    def __init__(
        self, http: aiohttp.ClientSession, base: str, jobs_db: JobsDb, callback_url: str
    ) -> None:
        self.http = http
        self.base = base
        self.jobs_db = jobs_db
        self.callback_url = callback_url
        """The URL the service gives functions (what callbacks are signed for)."""

    async def claim(self, worker: str, task: str = "cb-task") -> int:
        """A job of ``task`` claimed by ``worker`` (as that worker's claim would)."""
        job_id = await self.jobs_db.add(task, max_attempts=3)
        claimed = await self.jobs_db.scalar(
            "SELECT id FROM app_jobs.claim_jobs(%s, ARRAY[%s]::text[], '4 hours', 1)",
            (worker, task),
        )
        assert claimed == job_id
        return job_id

    async def post(
        self,
        job_id: int | str | None,
        body: object,
        *,
        worker: str | None = "worker-a",
        headers: dict[str, str] | None = None,
        sign: bool = True,
        attempt: int | None = 1,
        path: str = "/callback",
    ) -> tuple[int, dict[str, Any]]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        if worker is not None:
            sent["X-Worker-Id"] = worker
        if attempt is not None:
            sent["X-Job-Attempt"] = str(attempt)
        if job_id is not None:
            sent["X-Job-Id"] = str(job_id)
            if sign:
                sent["X-Job-Signature"] = self.signature(sent, raw)
        async with self.http.post(self.base + path, data=raw, headers=sent) as reply:
            return reply.status, await reply.json()

    def signature(self, sent: dict[str, str], raw: bytes, *, secret: str = SECRET) -> str:
        """A v2 callback signature over ``sent`` headers and ``raw`` body."""
        envelope = protocol.Envelope(
            "callback",
            sent.get("X-Worker-Id", ""),
            sent.get("X-Job-Id", ""),
            sent.get("X-Job-Attempt", ""),
            sent.get("X-Database-Id", ""),
            self.callback_url,
            sent.get("X-Job-Error", ""),
            raw,
        )
        return protocol.sign(secret, envelope, int(time.time()))


@pytest.fixture
async def client(tools: Tools, jobs_db: JobsDb) -> AsyncIterator[Client]:
    settings = tools.settings(
        JOBS_WORKER_ENABLED="false", JOBS_SIGNING_SECRET=SECRET, JOBS_METRICS_INTERVAL="0.1"
    )
    async with tools.running_service(settings) as service, aiohttp.ClientSession() as http:
        yield Client(
            http, f"http://127.0.0.1:{service.callback_port}", jobs_db, settings.callback_url
        )


async def test_success_completes_with_result_and_is_idempotent(
    client: Client, jobs_db: JobsDb
) -> None:
    job_id = await client.claim("worker-a")
    body = {"status": "success", "result": {"sent": True}}
    status, reply = await client.post(job_id, body)
    assert (status, reply["outcome"]) == (200, "completed")
    assert reply["jobId"] == str(job_id)
    done = await jobs_db.history(job_id)
    assert done is not None
    assert (done["status"], done["result"], done["worker_id"]) == (
        "completed",
        {"sent": True},
        "worker-a",
    )
    again, _ = await client.post(job_id, body)
    assert again == 200
    assert await jobs_db.history(job_id) == done


async def test_reference_forms_are_accepted(client: Client, jobs_db: JobsDb) -> None:
    ok = await client.claim("worker-a")
    assert (await client.post(ok, {"status": "success"}))[0] == 200
    assert (await jobs_db.history(ok) or {}).get("status") == "completed"

    failing = await client.claim("worker-a")
    status, reply = await client.post(
        failing, {"status": "error", "error": "deliberate"}, headers={"X-Job-Error": "TRUE"}
    )
    assert (status, reply["outcome"]) == (200, "retry")
    row = await jobs_db.job(failing)
    assert row is not None
    assert (row["last_error"], row["locked_by"]) == ("deliberate", None)
    # The same error callback again changes nothing.
    assert (await client.post(failing, {"status": "error", "error": "deliberate"}))[0] == 200
    assert await jobs_db.job(failing) == row

    # X-Job-Error: true means error whatever the body says (the reference body is bare).
    other = await client.claim("worker-a")
    status, _ = await client.post(other, b"", headers={"X-Job-Error": "true"})
    assert status == 200
    assert (await jobs_db.job(other) or {}).get("last_error") == "unknown error"


async def test_permanent_error_callback_fails_for_good(client: Client, jobs_db: JobsDb) -> None:
    job_id = await client.claim("worker-a")
    body = {"status": "error", "error": "no such user", "retry": False}
    status, reply = await client.post(job_id, body)
    assert (status, reply["outcome"]) == (200, "failed")
    dead = await jobs_db.history(job_id)
    assert dead is not None
    assert (dead["status"], dead["last_error"]) == ("failed", "no such user")
    assert (await client.post(job_id, body))[0] == 200


async def test_progress_does_not_end_the_job(client: Client, jobs_db: JobsDb) -> None:
    job_id = await client.claim("worker-a")
    status, _ = await client.post(job_id, {"status": "progress", "progress": 40, "message": "half"})
    assert status == 200
    row = await jobs_db.job(job_id)
    assert row is not None
    assert (row["progress"], row["progress_message"], row["locked_by"]) == (40, "half", "worker-a")
    assert (await client.post(job_id, {"status": "progress", "progress": 140}))[0] == 400


async def test_wrong_worker_unknown_job_and_bad_requests(client: Client, jobs_db: JobsDb) -> None:
    job_id = await client.claim("worker-a")
    status, reply = await client.post(job_id, {"status": "success"}, worker="worker-b")
    assert status == 409
    assert "worker-a" not in json.dumps(reply)  # the holder is never named
    assert await jobs_db.job(job_id) is not None  # still there, still locked

    assert (await client.post(987654, {"status": "success"}))[0] == 404
    assert (await client.post(None, {"status": "success"}))[0] == 400
    assert (await client.post(job_id, {"status": "success"}, worker=None))[0] == 400
    assert (await client.post("12abc", {"status": "success"}, sign=False))[0] == 400
    assert (await client.post(job_id, b"{not json"))[0] == 400
    assert (await client.post(job_id, ["a"]))[0] == 400
    assert (await client.post(job_id, {"status": "maybe"}))[0] == 400

    # After completion by worker-a, another worker's callback is a conflict, not a success.
    assert (await client.post(job_id, {"status": "success"}))[0] == 200
    assert (await client.post(job_id, {"status": "success"}, worker="worker-b"))[0] == 409
    assert (await client.post(job_id, {"status": "error", "error": "x"}))[0] == 409


async def test_signature_is_required_when_a_secret_is_set(client: Client, jobs_db: JobsDb) -> None:
    job_id = await client.claim("worker-a")
    assert (await client.post(job_id, {"status": "success"}, sign=False))[0] == 401
    sent = {"X-Worker-Id": "worker-a", "X-Job-Id": str(job_id), "X-Job-Attempt": "1"}
    raw = b'{"status": "success"}'
    forged = client.signature(sent, raw, secret="w" * 40)
    status, _ = await client.post(
        job_id, {"status": "success"}, sign=False, headers={"X-Job-Signature": forged}
    )
    assert status == 401
    envelope = protocol.Envelope(
        "callback", "worker-a", str(job_id), "1", "", client.callback_url, "", raw
    )
    stale = protocol.sign(SECRET, envelope, int(time.time()) - 3600)
    status, _ = await client.post(
        job_id, {"status": "success"}, sign=False, headers={"X-Job-Signature": stale}
    )
    assert status == 401
    # Signed, but without the attempt it settles: refused.
    assert (await client.post(job_id, {"status": "success"}, attempt=None))[0] == 400
    assert await jobs_db.job(job_id) is not None
    assert (await client.post(job_id, {"status": "success"}, path="/"))[0] == 200


async def test_health_and_metrics(client: Client, tools: Tools) -> None:
    for path in ("/health/liveness", "/health/readiness"):
        async with client.http.get(client.base + path) as reply:
            assert reply.status == 200
            assert (await reply.json())["status"] == "ok"
    await client.jobs_db.add_many("metered", 3)

    async def depth_reported() -> bool:
        async with client.http.get(client.base + "/metrics") as reply:
            assert reply.status == 200
            text = await reply.text()
        assert "jobs_claimed_total" in text
        return 'jobs_queue_depth{task="metered"} 3.0' in text

    await tools.eventually(depth_reported, what="the queue depth gauge")


async def test_outcomes_settled_by_callback_are_counted_in_metrics(client: Client) -> None:
    """``jobs_completed_total``, ``jobs_failed_total`` and ``jobs_retried_total`` count the
    jobs a function settles by callback, as they count the ones settled by reply."""
    done = await client.claim("worker-a", task="by-callback")
    retried = await client.claim("worker-a", task="by-callback")
    failed = await client.claim("worker-a", task="by-callback")
    assert (await client.post(done, {"status": "success", "result": 1}))[0] == 200
    assert (await client.post(retried, {"status": "error", "error": "later"}))[0] == 200
    body = {"status": "error", "error": "never", "retry": False}
    assert (await client.post(failed, body))[0] == 200
    # The same callbacks again change nothing, and are not counted twice.
    assert (await client.post(done, {"status": "success", "result": 1}))[0] == 200
    assert (await client.post(failed, body))[0] == 200

    async with client.http.get(client.base + "/metrics") as reply:
        text = await reply.text()
    assert 'jobs_completed_total{task="by-callback"} 1.0' in text
    assert 'jobs_retried_total{task="by-callback"} 1.0' in text
    assert 'jobs_failed_total{task="by-callback"} 1.0' in text
