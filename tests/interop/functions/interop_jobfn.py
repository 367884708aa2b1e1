"""A ``jobfn`` function for the reference Node worker to drive (served by uvicorn).

Task ``interop-echo``: ``{"mode": "ok", ...}`` succeeds and returns the payload;
``{"mode": "fail", "message": "..."}`` raises with that message. When ``INTEROP_RECORD`` names
a file, every run appends one JSON line with what the function was given.
"""

from __future__ import annotations

import json
import os

from jobfn import JobContext, job_function


@job_function(name="interop-echo")
def interop_echo(payload: dict[str, object], ctx: JobContext) -> dict[str, object]:
    """Echo the payload back, or fail with the requested message."""
    record = os.environ.get("INTEROP_RECORD")
    if record:
        seen = {
            "payload": payload,
            "job_id": ctx.job_id,
            "worker_id": ctx.worker_id,
            "database_id": ctx.database_id,
            "callback_url": ctx.callback_url,
        }
        with open(record, "a", encoding="utf-8") as out:
            out.write(json.dumps(seen) + "\n")
    if payload.get("mode") == "fail":
        raise RuntimeError(str(payload.get("message", "failure requested")))
    return {"echo": payload}
