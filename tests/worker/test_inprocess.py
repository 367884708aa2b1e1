"""In-process dispatch: a jobfn function imported into the worker (JOBS_INPROCESS), called
through its ASGI interface, settles jobs exactly as it would over HTTP."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jobservice.config import ConfigError
from jobservice.inprocess import load

if TYPE_CHECKING:
    from tests.worker.conftest import JobsDb, Tools

MODULE = """
from __future__ import annotations

import asyncio

from jobfn import JobContext, PermanentError, job_function

calls: list[dict[str, object]] = []


@job_function(name="inproc-double")
async def double(payload: dict[str, int], ctx: JobContext) -> dict[str, object]:
    calls.append({"job": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt})
    return {"doubled": payload["n"] * 2}


@job_function(name="inproc-permanent")
def permanent(payload: dict[str, int], ctx: JobContext) -> None:
    raise PermanentError("user 7 does not exist")


@job_function(name="inproc-crash")
async def crash(payload: dict[str, int], ctx: JobContext) -> None:
    raise RuntimeError("disk full")


@job_function(name="inproc-slow", timeout=None)
async def slow(payload: dict[str, int], ctx: JobContext) -> None:
    await asyncio.Event().wait()


@job_function(name="inproc-background", background=True)
async def background(payload: dict[str, int], ctx: JobContext) -> dict[str, int]:
    await ctx.progress(50, "half way")
    return {"background": payload["n"]}
"""


@pytest.fixture
def functions_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"inproc_fns_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


async def test_inprocess_functions_settle_jobs(
    tools: Tools, jobs_db: JobsDb, functions_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = ["double", "permanent", "crash", "slow", "background"]
    mapping = {f"inproc-{t}": f"{functions_module}:{t}" for t in tasks}
    settings = tools.settings(
        JOBS_INPROCESS=__import__("json").dumps(mapping),
        JOBS_TASK_TIMEOUT='{"inproc-slow": 0.3}',
    )
    # An in-process function reads the worker's environment: the same signing secret, so its
    # (background) callbacks are signed like any function's.
    assert settings.signing_secret is not None
    monkeypatch.setenv("JOBS_SIGNING_SECRET", settings.signing_secret)
    async with tools.running_service(settings):
        ok = await jobs_db.add("inproc-double", {"n": 21})
        perm = await jobs_db.add("inproc-permanent", {"n": 1})
        crash = await jobs_db.add("inproc-crash", {"n": 1})
        slow = await jobs_db.add("inproc-slow", {"n": 1})
        bg = await jobs_db.add("inproc-background", {"n": 5})

        done = await jobs_db.finished(ok)
        assert done["status"] == "completed"
        assert done["result"] == {"doubled": 42}
        dead = await jobs_db.finished(perm)
        assert (dead["status"], dead["attempts"]) == ("failed", 1)
        assert "user 7 does not exist" in dead["last_error"]
        row = await jobs_db.retried(crash)
        assert "disk full" in row["last_error"]
        row = await jobs_db.retried(slow)
        assert row["last_error"] == f"timed out after 0.3 s in {functions_module}:slow"
        finished_bg = await jobs_db.finished(bg)
        assert finished_bg["status"] == "completed"
        assert finished_bg["result"] == {"background": 5}

    module = __import__(functions_module)
    assert module.calls == [{"job": str(ok), "task": "inproc-double", "attempt": 1}]


def test_bad_targets_stop_startup(functions_module: str) -> None:
    with pytest.raises(ConfigError, match="JOBS_INPROCESS"):
        load("no_such_module_xyz:fn")
    with pytest.raises(ConfigError, match="JOBS_INPROCESS"):
        load(f"{functions_module}:missing")
    with pytest.raises(ConfigError, match="JOBS_INPROCESS"):
        load(f"{functions_module}:calls")
