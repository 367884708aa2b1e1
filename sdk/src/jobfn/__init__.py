"""jobfn: turn a typed handler into a job function served over HTTP.

.. code-block:: python

    from pydantic import BaseModel
    from jobfn import JobContext, job_function

    class Greeting(BaseModel):
        name: str

    @job_function(name="greet")
    async def greet(payload: Greeting, ctx: JobContext) -> dict[str, str]:
        ctx.logger.info("greeting %s", payload.name)
        return {"greeting": f"Hello, {payload.name}"}

Serve it with ``jobfn serve my_module`` (uvicorn on ``PORT``); see ``sdk/README.md``.
"""

from __future__ import annotations

from jobfn.callback_sender import CallbackPolicy
from jobfn.context import JobContext
from jobfn.errors import ConfigError, PermanentError
from jobfn.function import JobFunction, job_function
from jobfn.serve import serve
from jobfn.types import JobRun

__all__ = [
    "CallbackPolicy",
    "ConfigError",
    "JobContext",
    "JobFunction",
    "JobRun",
    "PermanentError",
    "job_function",
    "serve",
]
