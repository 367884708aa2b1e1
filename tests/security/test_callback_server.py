"""The callback port, attacked from 127.0.0.1: each hole of issue 8, through ``jobs worker``.

Every test runs the real job service as a process (worker off: jobs are claimed here, as the
worker would, so the test controls attempts) and posts what an attacker could.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.security.conftest import Db, JobService, StartService, Wire

SUCCESS = b'{"status": "success", "result": {"stolen": true}}'


def _start(job_service: StartService, **env: str) -> JobService:
    return job_service(JOBS_WORKER_ENABLED="false", **env)


def _held_victim(db: Db, worker: str = "sec-worker-1") -> tuple[int, int, dict[str, Any] | None]:
    """A job of task ``victim`` claimed by ``worker``: its id, attempt and row as it stands."""
    db.add("victim")
    job_id, attempt = db.claim(worker, "victim")
    return job_id, attempt, db.job(job_id)


def test_an_unsigned_callback_is_refused_and_the_job_untouched(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    job_id, attempt, before = _held_victim(db)
    headers = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
        secret=None,
    )
    reply = wire.post(service.callback_url, SUCCESS, headers)
    assert reply.status_code == 401
    assert db.job(job_id) == before
    assert db.history(job_id) is None


def test_a_dispatch_signature_is_not_a_callback_signature(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    job_id, attempt, before = _held_victim(db)
    # The same fields, signed with the right secret, but for purpose "dispatch": what a
    # function (or anyone on its path) sees on every job it is sent.
    headers = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
        purpose="dispatch",
    )
    assert wire.post(service.callback_url, SUCCESS, headers).status_code == 401
    assert db.job(job_id) == before


def test_a_signed_callback_never_settles_a_later_attempt(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    job_id = db.add("victim")
    claimed, first = db.claim("sec-worker-1", "victim")
    assert (claimed, first) == (job_id, 1)
    # A function signs its success callback for attempt 1, but it arrives late: meanwhile the
    # attempt failed and the same worker claimed the job again (attempt 2).
    late = wire.callback_headers(
        worker="sec-worker-1", job_id=job_id, attempt=1, url=service.callback_url, body=SUCCESS
    )
    db.query(
        "SELECT * FROM app_jobs.fail_jobs('sec-worker-1', ARRAY[%s]::bigint[],"
        " ARRAY['attempt 1 timed out'])",
        (job_id,),
    )
    db.query("UPDATE app_jobs.jobs SET run_at = now() WHERE id = %s", (job_id,))
    assert db.claim("sec-worker-1", "victim") == (job_id, 2)
    before = db.job(job_id)
    reply = wire.post(service.callback_url, SUCCESS, late)
    assert reply.status_code == 409
    assert "sec-worker-1" not in reply.json().get("error", "").replace("worker sec-worker-1", "")
    assert db.job(job_id) == before
    # Claiming the attempt number under the old signature is tampering.
    tampered = {**late, "X-Job-Attempt": "2"}
    assert wire.post(service.callback_url, SUCCESS, tampered).status_code == 401
    assert db.job(job_id) == before
    # The callback for attempt 2 settles it.
    current = wire.callback_headers(
        worker="sec-worker-1", job_id=job_id, attempt=2, url=service.callback_url, body=SUCCESS
    )
    assert wire.post(service.callback_url, SUCCESS, current).status_code == 200
    done = db.history(job_id)
    assert done is not None
    assert (done["status"], done["attempts"]) == ("completed", 2)


def test_headers_cannot_be_changed_under_a_valid_signature(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    job_id, attempt, before = _held_victim(db)
    signed = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
    )
    for change in (
        {"X-Job-Error": "true"},  # turn a success into a failure
        {"X-Worker-Id": "sec-worker-2"},
        {"X-Database-Id": wire.OTHER_DB_ID},
        {"X-Job-Id": str(job_id + 1)},
    ):
        assert wire.post(service.callback_url, SUCCESS, {**signed, **change}).status_code == 401
    # A callback signed for another callback URL (a function told to post elsewhere).
    elsewhere = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url="http://attacker.example/callback",
        body=SUCCESS,
    )
    assert wire.post(service.callback_url, SUCCESS, elsewhere).status_code == 401
    # The body is signed too.
    assert wire.post(service.callback_url, b'{"status": "success"}', signed).status_code == 401
    assert db.job(job_id) == before


def test_a_conflict_does_not_name_the_lock_holder(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    db.add("victim")
    job_id, attempt = db.claim("holder-worker-7", "victim")
    headers = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
    )
    reply = wire.post(service.callback_url, SUCCESS, headers)
    assert reply.status_code == 409
    assert "holder-worker-7" not in reply.text
    assert "holder-worker-7" not in service.output()


def test_a_callback_for_another_tenant_does_not_settle_the_job(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    job_id, attempt, before = _held_victim(db)
    headers = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
        database_id=wire.OTHER_DB_ID,
    )
    assert wire.post(service.callback_url, SUCCESS, headers).status_code == 409
    assert db.job(job_id) == before


def test_the_previous_secret_is_accepted_during_a_rotation(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service, JOBS_SIGNING_SECRET_PREVIOUS=wire.OLD_SECRET)
    db.add("rotated")
    job_id, attempt = db.claim("sec-worker-1", "rotated")
    headers = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
        secret=wire.OLD_SECRET,
    )
    assert wire.post(service.callback_url, SUCCESS, headers).status_code == 200
    wrong = wire.callback_headers(
        worker="sec-worker-1",
        job_id=job_id,
        attempt=attempt,
        url=service.callback_url,
        body=SUCCESS,
        secret="not-the-secret-" + "x" * 32,
    )
    assert wire.post(service.callback_url, SUCCESS, wrong).status_code == 401


def test_hostile_input_is_a_400_and_long_or_nul_error_text_is_cut(
    job_service: StartService, db: Db, wire: type[Wire]
) -> None:
    service = _start(job_service)
    url = service.callback_url
    db.add("victim")
    job_id, attempt = db.claim("sec-worker-1", "victim")

    def send(body: bytes, *, job: int | str = job_id, tries: int | str = attempt) -> httpx.Response:
        headers = wire.callback_headers(
            worker="sec-worker-1", job_id=job, attempt=tries, url=url, body=body
        )
        return wire.post(url, body, headers)

    ok = b'{"status": "success"}'
    assert send(ok, job="\u0661\u0662").status_code in (400, 401)  # non-ASCII digits
    assert send(ok, job="99999999999999999999").status_code == 400  # beyond bigint
    assert send(ok, job=str(2**63)).status_code == 400
    assert send(ok, tries="-1").status_code == 400
    deep = b'{"status": "success", "result": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert send(deep).status_code == 400
    nested = b'{"status": "success", "result": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert send(nested).status_code == 400
    assert send(b'{"status": "success", "result": "\\ud800"}').status_code == 400
    assert send(b'{"status": "success", "result": "a\\u0000b"}').status_code == 400
    assert send(b'{"status": "success", "result": NaN}').status_code == 400
    assert send(b'{"status": "progress", "progress": 1e400}').status_code == 400
    assert db.job(job_id) is not None
    assert db.history(job_id) is None

    text = "x\x00y" + "z" * 10_000
    reply = send(json.dumps({"status": "error", "error": text}).encode())
    assert reply.status_code == 200, reply.text
    row = db.job(job_id)
    assert row is not None
    assert "\x00" not in row["last_error"]
    assert len(row["last_error"]) == 4000
    assert row["last_error"].startswith("xyzz")
    assert row["last_error"].endswith("…")
