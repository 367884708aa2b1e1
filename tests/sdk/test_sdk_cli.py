"""``jobfn serve``: finding the function, PORT, and a graceful SIGTERM in a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import textwrap
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from jobfn import ConfigError
from jobfn.cli import TargetError, load_target, main
from jobfn.serve import port_from_env

if TYPE_CHECKING:
    from tests.sdk.conftest import Serve

JOBFN = Path(sys.executable).parent / "jobfn"
WAIT = 30.0


def write_module(directory: Path, source: str) -> str:
    name = f"fnmod_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


ONE = """
from jobfn import job_function

helper = 3

@job_function(name="only")
def only(payload: dict) -> None: ...

alias = only
"""

TWO = """
from jobfn import job_function

@job_function
def first() -> None: ...

@job_function
def second() -> None: ...
"""


def test_the_one_job_function_of_a_module_is_found(module_dir: Path) -> None:
    name = write_module(module_dir, ONE)
    assert load_target(name).name == "only"
    assert load_target(f"{name}:only").name == "only"


def test_several_functions_must_be_named(module_dir: Path) -> None:
    name = write_module(module_dir, TWO)
    with pytest.raises(TargetError, match=r"several job functions \(first, second\); name one"):
        load_target(name)
    assert load_target(f"{name}:second").name == "second"


def test_unclear_targets_are_explained(module_dir: Path) -> None:
    name = write_module(module_dir, "x = 1\n")
    with pytest.raises(TargetError, match="defines no job function"):
        load_target(name)
    with pytest.raises(TargetError, match="is not a job function"):
        load_target(f"{name}:x")
    with pytest.raises(TargetError, match="has no attribute 'y'"):
        load_target(f"{name}:y")
    with pytest.raises(TargetError, match="cannot import module 'no_such_module_here'"):
        load_target("no_such_module_here")


def test_cli_reports_a_bad_target_in_one_line(
    module_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = write_module(module_dir, TWO)
    assert main(["serve", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"jobfn serve: module {name!r} defines several job functions")


@pytest.mark.parametrize("raw", ["http", "0", "70000", "80.5"])
def test_malformed_port_is_named(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        port_from_env({"PORT": raw})
    assert str(caught.value) == (f"PORT: expected an integer from 1 to 65535 (got {raw!r})")


def test_port_defaults_to_8080() -> None:
    assert port_from_env({}) == 8080
    assert port_from_env({"PORT": " 9000 "}) == 9000


def test_console_script_refuses_a_malformed_port(module_dir: Path) -> None:
    import subprocess

    name = write_module(module_dir, ONE)
    done = subprocess.run(
        [str(JOBFN), "serve", name],
        env={**os.environ, "PORT": "eighty"},
        cwd=module_dir,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "jobfn serve: PORT: expected an integer from 1 to 65535 (got 'eighty')\n"
    )


GATED = """
import httpx
from jobfn import JobContext, job_function

@job_function(name="gated")
async def gated(payload: dict, ctx: JobContext) -> dict:
    async with httpx.AsyncClient() as client:
        answer = await client.get(payload["gate"], timeout=60)
    return {"gate": answer.text, "job": ctx.job_id}
"""


class Lines:
    """A subprocess's stderr, line by line, with a wait for a line containing some text."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream
        self.seen: list[str] = []

    async def wait_for(self, text: str) -> str:
        async with asyncio.timeout(WAIT):
            for line in self.seen:
                if text in line:
                    return line
            while True:
                raw = await self.stream.readline()
                if not raw:
                    raise AssertionError(f"stderr ended before {text!r}: {self.seen}")
                line = raw.decode()
                self.seen.append(line)
                if text in line:
                    return line


async def test_sigterm_finishes_the_job_in_flight_then_exits_0(
    tmp_path: Path, serve_app: Serve
) -> None:
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def gate(request: Request) -> Response:
        arrived.set()
        await release.wait()
        return PlainTextResponse("open")

    name = write_module(tmp_path, GATED)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gate_app = Starlette(routes=[Route("/gate", gate)])
    async with serve_app(gate_app, lifespan="off") as gate_server:
        env = {**os.environ, "PORT": str(port), "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            str(JOBFN), "serve", name, "--host", "127.0.0.1",
            cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        lines = Lines(proc.stderr)
        try:
            await lines.wait_for("Application startup complete")
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
                job = asyncio.create_task(
                    http.post(
                        "/",
                        json={"gate": f"{gate_server.url}/gate"},
                        headers={"X-Job-Id": "31", "X-Worker-Id": "w-sig"},
                    )
                )
                await asyncio.wait_for(arrived.wait(), WAIT)
                proc.send_signal(signal.SIGTERM)
                await lines.wait_for("Waiting for connections to close")
                # It no longer accepts connections...
                with pytest.raises(httpx.ConnectError):
                    async with httpx.AsyncClient(base_url=url) as fresh:
                        await fresh.get("/health/liveness")
                assert not job.done()
                # ...and the job in flight still gets its reply.
                release.set()
                reply = await asyncio.wait_for(job, WAIT)
            assert reply.status_code == 200
            assert reply.json() == {"complete": True, "result": {"gate": "open", "job": "31"}}
            assert await asyncio.wait_for(proc.wait(), WAIT) == 0
            rest = await proc.stderr.read()
            records = [
                json.loads(line) for line in ("".join(lines.seen) + rest.decode()).splitlines()
            ]
            [job_line] = [r for r in records if r.get("action") == "run"]
            assert job_line["job_id"] == "31"
            assert job_line["worker_id"] == "w-sig"
            assert job_line["task"] == "gated"
            assert job_line["outcome"] == "success"
            assert job_line["level"] == "info"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
