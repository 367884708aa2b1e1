"""@job_function in-process: handler shapes, replies, callbacks, signatures, logs, .now/.batch."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel, Field

import jobfn
from jobfn import ConfigError, JobContext, JobFunction, PermanentError, job_function, protocol
from jobfn.testing import TEST_CALLBACK_URL, TEST_DATABASE_ID, ainvoke, invoke

SECRET = "function-test-secret-0123456789abcdef"


class Email(BaseModel):
    to: str
    subject: str = Field(min_length=1)
    retries: int = 0


@job_function(name="send-email")
async def send_email(payload: Email, ctx: JobContext) -> dict[str, object]:
    """Pretend to send an email."""
    if payload.to == "nobody":
        raise PermanentError("no such mailbox")
    if payload.to == "crash":
        raise RuntimeError("smtp is down")
    return {"sent_to": payload.to, "job_id": ctx.job_id, "attempt": ctx.attempt}


def test_public_surface_is_pinned() -> None:
    assert jobfn.__all__ == [
        "CallbackPolicy",
        "ConfigError",
        "JobContext",
        "JobFunction",
        "JobRun",
        "PermanentError",
        "job_function",
        "serve",
    ]
    for name in jobfn.__all__:
        assert getattr(jobfn, name).__doc__


def test_decorated_function_keeps_its_identity_and_stays_callable() -> None:
    assert isinstance(send_email, JobFunction)
    assert send_email.name == "send-email"
    assert send_email.__name__ == "send_email"
    assert send_email.__doc__ == "Pretend to send an email."
    result = asyncio.run(send_email(Email(to="a@b.c", subject="hi"), JobContext(job_id="9")))
    assert result == {"sent_to": "a@b.c", "job_id": "9", "attempt": None}

    @job_function
    def double(payload: int) -> int:
        return payload * 2

    assert double(21) == 42
    assert double.name == "double"


def test_success_replies_complete_with_result_and_calls_back() -> None:
    run = invoke(send_email, {"to": "a@b.c", "subject": "hi"})
    assert run.status == 200
    assert run.body == {
        "complete": True,
        "result": {"sent_to": "a@b.c", "job_id": "1", "attempt": 1},
    }
    [callback] = run.callbacks
    assert callback.url == "http://callbacks.test/callback"
    assert callback.body == {"status": "success", "result": run.result}
    assert callback.headers["x-worker-id"] == "test-worker"
    assert callback.headers["x-job-id"] == "1"
    assert callback.headers["x-database-id"] == TEST_DATABASE_ID
    assert "x-job-error" not in callback.headers


def test_invalid_payload_is_422_with_field_errors_and_permanent() -> None:
    run = invoke(send_email, {"subject": "", "retries": "many"})
    assert run.status == 422
    assert run.permanent
    assert run.headers["x-job-error"] == "true"
    assert run.body["retry"] is False
    fields = {tuple(error["loc"]): error["type"] for error in run.body["errors"]}
    assert fields == {
        ("to",): "missing",
        ("subject",): "string_too_short",
        ("retries",): "int_parsing",
    }
    assert "to: Field required" in run.body["error"]
    [callback] = run.callbacks
    assert callback.headers["x-job-error"] == "true"
    assert callback.body["status"] == "error"
    assert callback.body["retry"] is False


def test_permanent_error_is_4xx_marked_permanent() -> None:
    run = invoke(send_email, {"to": "nobody", "subject": "hi"})
    assert run.status == 400
    assert run.permanent
    assert run.body == {"error": "no such mailbox", "retry": False}

    @job_function
    def gone(payload: dict[str, Any]) -> None:
        raise PermanentError("the record was deleted", status=410)

    assert invoke(gone, {}).status == 410
    with pytest.raises(ValueError, match="4xx"):
        PermanentError("x", status=500)


def test_exception_is_500_with_its_message_and_retryable() -> None:
    run = invoke(send_email, {"to": "crash", "subject": "hi"})
    assert run.status == 500
    assert run.body == {"error": "smtp is down"}
    assert not run.permanent
    assert run.headers["x-job-error"] == "true"
    assert run.callbacks[0].body == {"status": "error", "error": "smtp is down"}
    assert run.callbacks[0].headers["x-job-error"] == "true"


def test_exception_without_message_is_named_by_its_type() -> None:
    @job_function
    def lookup(payload: dict[str, Any]) -> object:
        return payload["missing"]

    run = invoke(lookup, {})
    assert run.status == 500
    assert run.error == "'missing'"

    @job_function
    def bare(payload: dict[str, Any]) -> None:
        raise RuntimeError

    assert invoke(bare, {}).error == "RuntimeError"


def test_body_that_is_not_json_is_400_permanent_and_reported() -> None:
    run = invoke(send_email, body=b"{not json")
    assert run.status == 400
    assert run.permanent
    assert run.error is not None
    assert run.error.startswith("request body is not valid JSON")
    assert run.callbacks[0].body["status"] == "error"


def test_body_over_the_limit_is_413_and_reported_by_callback() -> None:
    @job_function(max_body_size=64)
    def small(payload: dict[str, Any]) -> None:
        raise AssertionError("must not run")

    run = invoke(small, {"blob": "x" * 100})
    assert run.status == 413
    assert run.permanent
    assert run.error == "request body is larger than 64 bytes"
    # The reference sent no callback here and the job stayed locked for hours (R4).
    assert run.callbacks[0].body == {"status": "error", "error": run.error, "retry": False}


def test_result_that_is_not_json_fails_the_attempt() -> None:
    @job_function
    def odd() -> object:
        return object()

    run = invoke(odd)
    assert run.status == 500
    assert run.error is not None
    assert "not JSON-serialisable" in run.error


def test_dict_and_unannotated_payloads() -> None:
    @job_function
    def as_dict(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    @job_function
    def anything(payload, ctx):  # type: ignore[no-untyped-def]
        return {"got": payload}

    assert invoke(as_dict, {"a": [1, 2]}).result == {"a": [1, 2]}
    assert invoke(as_dict, [1, 2]).status == 422
    assert invoke(anything, [1, 2, 3]).result == {"got": [1, 2, 3]}
    assert invoke(anything, body=b"").result == {"got": {}}


def test_handlers_without_payload_or_ctx() -> None:
    seen: list[object] = []

    @job_function
    def ctx_only(ctx: JobContext) -> None:
        seen.append(ctx.task)

    @job_function
    async def nothing() -> str:
        return "done"

    assert invoke(ctx_only, {"ignored": True}).status == 200
    assert seen == ["ctx_only"]
    assert invoke(nothing).result == "done"


def test_bad_handler_signatures_are_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"must take \(payload, ctx\)"):

        @job_function
        def three(a: int, b: int, c: int) -> None: ...

    with pytest.raises(TypeError, match="cannot resolve the annotations"):

        @job_function
        def unknown(payload: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
            ...


def test_locally_defined_models_resolve() -> None:
    class Local(BaseModel):
        n: int

    @job_function
    def square(payload: Local) -> int:
        return payload.n**2

    assert invoke(square, {"n": 7}).result == 49


def test_payload_option_overrides_the_annotation() -> None:
    @job_function(payload=Email)
    def raw(payload: Any) -> str:
        assert isinstance(payload, Email)
        return payload.to

    assert invoke(raw, {"to": "x@y", "subject": "s"}).result == "x@y"
    assert invoke(raw, {"to": "x@y"}).status == 422


async def test_sync_handlers_run_off_the_event_loop() -> None:
    threads: list[int] = []

    @job_function
    def blocking(payload: dict[str, Any]) -> None:
        threads.append(threading.get_ident())

    run = await ainvoke(blocking, {})
    assert run.status == 200
    assert threads
    assert threads[0] != threading.get_ident()


def test_timeout_fails_the_attempt_retryably() -> None:
    @job_function(timeout=0.05)
    async def slow(payload: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    run = invoke(slow, {})
    assert run.status == 500
    assert run.error == "timed out after 0.05 s"
    assert not run.permanent


def test_context_carries_the_job_headers() -> None:
    seen: list[JobContext] = []

    @job_function(name="peek")
    def peek(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.append(ctx)

    invoke(
        peek,
        {},
        {
            "X-Job-Id": "77",
            "X-Actor-Id": "actor-1",
            "X-Job-Attempt": "3",
            "X-Job-Max-Attempts": "3",
            "X-Task-Identifier": "peek-task",
        },
    )
    [ctx] = seen
    assert ctx.fields == {
        "job_id": "77",
        "task": "peek-task",
        "database_id": TEST_DATABASE_ID,
        "worker_id": "test-worker",
        "actor_id": "actor-1",
        "attempt": 3,
        "max_attempts": 3,
    }
    assert ctx.callback_url == "http://callbacks.test/callback"
    assert ctx.is_last_attempt


def test_direct_invocation_without_job_headers_sends_no_callback() -> None:
    drop = dict.fromkeys(
        ["X-Worker-Id", "X-Job-Id", "X-Database-Id", "X-Callback-Url", "X-Task-Identifier"]
    )
    seen: list[JobContext] = []

    @job_function
    def direct(payload: dict[str, Any], ctx: JobContext) -> str:
        seen.append(ctx)
        return "ok"

    run = invoke(direct, {"a": 1}, drop | {"X-Job-Attempt": None, "X-Job-Max-Attempts": None})
    assert run.status == 200
    assert run.result == "ok"
    assert run.callbacks == []
    assert seen[0].job_id is None
    assert seen[0].fields == {"task": "direct"}


def test_reply_completion_sends_no_callback() -> None:
    run = invoke(send_email, {"to": "crash", "subject": "s"}, completion="reply")
    assert run.status == 500
    assert run.callbacks == []


def test_background_job_answers_202_then_calls_back_with_progress() -> None:
    @job_function(background=True)
    async def long(payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
        await ctx.progress(25, "a quarter")
        await ctx.progress(100)
        return {"rows": payload["rows"]}

    for completion in ("callback", "reply"):
        run = invoke(long, {"rows": 3}, completion=completion)
        assert run.status == 202
        assert run.body == {"complete": False, "accepted": True}
        assert run.progress == [(25, "a quarter"), (100, None)]
        assert run.outcome_callback is not None
        assert run.outcome_callback.body == {"status": "success", "result": {"rows": 3}}


def test_background_job_still_validates_before_accepting() -> None:
    @job_function(background=True)
    async def typed(payload: Email) -> None: ...

    run = invoke(typed, {"to": "x"}, completion="reply")
    assert run.status == 422
    assert run.callbacks == []


def test_progress_from_a_sync_handler_and_its_checks() -> None:
    @job_function
    def steps(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.progress_sync(50, "half")

    assert invoke(steps, {}).progress == [(50, "half")]

    @job_function
    async def wrong(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.progress(120)

    run = invoke(wrong, {})
    assert run.status == 500
    assert run.error == "progress percent must be between 0 and 100 (got 120)"
    assert asyncio.run(JobContext().progress(10)) is False


def test_signed_requests_when_a_secret_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_SIGNING_SECRET", SECRET)
    ran: list[str] = []

    @job_function
    def guarded(payload: dict[str, Any]) -> str:
        ran.append("ran")
        return "ran"

    run = invoke(guarded, {"a": 1})  # invoke signs like a worker would
    assert run.status == 200
    [callback] = run.callbacks
    raw = json.dumps(callback.body, separators=(",", ":")).encode()
    assert callback.headers["x-job-attempt"] == "1"
    envelope = protocol.Envelope(
        "callback", "test-worker", "1", "1", TEST_DATABASE_ID, TEST_CALLBACK_URL, "", raw
    )
    assert protocol.verify(SECRET, callback.headers["x-job-signature"], envelope, now=time.time())
    assert ran == ["ran"]

    dispatch = protocol.Envelope(
        "dispatch", "test-worker", "1", "1", TEST_DATABASE_ID, TEST_CALLBACK_URL, "", b'{"a":1}'
    )
    wrong = protocol.sign("w" * 32, dispatch, int(time.time()))
    as_callback = protocol.sign(
        SECRET, dataclasses.replace(dispatch, purpose="callback"), int(time.time())
    )
    for signature in (None, "", "t=1,v1=00", wrong, as_callback):
        refused = invoke(guarded, {"a": 1}, {"X-Job-Signature": signature})
        assert refused.status == 401
        assert refused.error == "missing, invalid or stale X-Job-Signature"
        assert refused.callbacks == []
    assert ran == ["ran"]


def test_explicit_no_secret_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_SIGNING_SECRET", SECRET)

    @job_function(signing_secret=None)
    def open_fn() -> None: ...

    assert invoke(open_fn, headers={"X-Job-Signature": ""}).status == 200


def test_one_log_line_per_job_and_handler_lines_carry_job_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @job_function(name="chatty")
    def chatty(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.logger.info("working on %s", payload["item"], extra={"step": 1})

    caplog.set_level(logging.INFO)
    invoke(chatty, {"item": "x"}, {"X-Job-Id": "5"})
    [own] = [r for r in caplog.records if r.getMessage() == "working on x"]
    assert (own.job_id, own.task, own.step) == ("5", "chatty", 1)  # type: ignore[attr-defined]
    [line] = [r for r in caplog.records if r.name == "jobfn.jobs"]
    fields = line.__dict__
    assert fields["action"] == "run"
    assert fields["outcome"] == "success"
    assert (fields["job_id"], fields["task"], fields["attempt"]) == ("5", "chatty", 1)
    assert fields["database_id"] == TEST_DATABASE_ID
    assert isinstance(fields["duration_ms"], float)


async def test_now_runs_in_process_with_metadata() -> None:
    ok = await send_email.now({"to": "a@b.c", "subject": "hi"})
    assert ok.ok
    assert ok.status == "completed"
    assert ok.result == {"sent_to": "a@b.c", "job_id": None, "attempt": None}
    assert ok.started_at is not None
    assert ok.finished_at is not None
    assert ok.started_at <= ok.finished_at
    assert ok.duration_ms is not None
    assert ok.duration_ms >= 0

    failed = await send_email.now({"to": "crash", "subject": "hi"})
    assert (failed.status, failed.error, failed.retry) == ("failed", "smtp is down", True)
    assert isinstance(failed.exception, RuntimeError)
    invalid = await send_email.now({"subject": "hi"})
    assert invalid.status == "failed"
    assert invalid.retry is False
    assert (await send_email.now(Email(to="m@n", subject="s"))).ok


async def test_batch_keeps_order_limits_concurrency_and_can_stop() -> None:
    running = 0
    peak = 0

    @job_function
    async def work(payload: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        if payload < 0:
            raise ValueError(f"negative {payload}")
        return payload * 10

    runs = await work.batch([1, 2, -3, 4, 5, 6], concurrency=2)
    assert [r.result for r in runs] == [10, 20, None, 40, 50, 60]
    assert [r.status for r in runs].count("failed") == 1
    assert peak == 2

    stopped = await work.batch([-1, 2, 3, 4], concurrency=1, stop_on_error=True)
    assert [r.status for r in stopped] == ["failed", "skipped", "skipped", "skipped"]
    assert await work.batch([]) == []
    with pytest.raises(ValueError, match="concurrency"):
        await work.batch([1], concurrency=0)


def test_on_startup_checks_run_once_and_a_config_error_refuses_the_lifespan() -> None:
    calls: list[str] = []

    def check() -> None:
        calls.append("check")

    @job_function(on_startup=[check])
    async def fine(payload: dict[str, Any]) -> None:
        return None

    fine.start()
    fine.start()
    assert calls == ["check"]

    def refuse() -> None:
        raise ConfigError("EXAMPLE_URL: required (the example endpoint)")

    @job_function(on_startup=[refuse])
    async def broken(payload: dict[str, Any]) -> None:
        return None

    async def lifespan_reply() -> dict[str, Any]:
        sent: list[dict[str, Any]] = []
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with contextlib.suppress(ConfigError):
            await broken({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        return sent[0]

    reply = asyncio.run(lifespan_reply())
    assert reply["type"] == "lifespan.startup.failed"
    assert "EXAMPLE_URL: required" in reply["message"]
