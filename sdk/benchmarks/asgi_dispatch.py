"""Per-request cost of a job function's ASGI interface, as the worker's in-process dispatch uses it.

``python sdk/benchmarks/asgi_dispatch.py``: a no-op handler with a pydantic payload and the
headers our worker sends (reply completion, so no callback), with the per-job log line off and
on (JSON to an in-memory stream). Prints microseconds per request (best of 3).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from typing import Any

from pydantic import BaseModel

from jobfn import JobContext, job_function
from jobfn.json_logs import configure


class Email(BaseModel):
    to: str
    subject: str


@job_function(name="noop")
async def noop(payload: Email, ctx: JobContext) -> None:
    return None


BODY = b'{"to":"a@b.c","subject":"hello"}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-worker-id", b"worker-1"),
    (b"x-job-id", b"12345"),
    (b"x-database-id", b"5b720132-17d5-424d-9bcb-ee7b17c13d43"),
    (b"x-callback-url", b"http://callback:12345/"),
    (b"x-task-identifier", b"noop"),
    (b"x-job-attempt", b"1"),
    (b"x-job-max-attempts", b"25"),
    (b"x-job-completion", b"reply"),
    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    (b"content-length", str(len(BODY)).encode()),
]


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


async def measure(requests: int = 30_000) -> float:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": HEADERS}
    for _ in range(2_000):
        await noop(scope, receive, send)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(requests):
            await noop(scope, receive, send)
        best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return best


def main() -> None:
    configure(logging.WARNING, stream=io.StringIO())
    print(f"per-job log line off: {asyncio.run(measure()):.1f} us/request")
    configure(logging.INFO, stream=io.StringIO())
    print(f"per-job log line on:  {asyncio.run(measure()):.1f} us/request")


if __name__ == "__main__":
    main()
