"""The in-process request scope is what an HTTP server would give the function."""

from __future__ import annotations

from typing import Any

from jobfn import JobContext, job_function
from jobfn.asgi import post_scope
from jobfn.testing import ainvoke


def test_post_scope_is_an_asgi_post_to_the_root() -> None:
    scope = post_scope([(b"x-job-id", b"7")])
    assert (scope["type"], scope["method"], scope["path"]) == ("http", "POST", "/")
    assert scope["asgi"]["version"] == "3.0"
    assert scope["headers"] == [(b"x-job-id", b"7")]
    assert scope["server"] == ("in-process", 0)


async def test_a_function_reads_the_job_headers_from_the_scope() -> None:
    seen: dict[str, Any] = {}

    @job_function(name="peek")
    async def peek(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.update(job_id=ctx.job_id, task=ctx.task, payload=payload)

    reply = await ainvoke(peek, {"a": 1}, job_id="42", completion="reply")

    assert reply.status == 200
    assert seen == {"job_id": "42", "task": "peek", "payload": {"a": 1}}
