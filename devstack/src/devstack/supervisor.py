"""Run a set of processes together: prefixed output, readiness checks, clean shutdown.

A :class:`Supervisor` starts each :class:`ProcessSpec` in its own process group, copies its output
to ours with a ``name |`` prefix, waits until its readiness URL answers, and on :meth:`stop`
sends SIGTERM to every group, waits up to ``grace`` seconds, then SIGKILLs what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    """An URL that answers 2xx once the process serves; ``None``: ready when started."""


class StackError(Exception):
    """A process of the stack failed to start or died."""


@dataclass
class _Running:
    spec: ProcessSpec
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None] | None = None
    tail: list[str] = field(default_factory=list)


def _probe(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return 200 <= int(reply.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Supervisor:
    """Starts, watches and stops the processes of the local stack."""

    def __init__(self, *, grace: float = 15.0, out: TextIO | None = None) -> None:
        self._grace = grace
        self._running: list[_Running] = []
        self._out = out if out is not None else sys.stdout

    def _write(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    async def _pump(self, running: _Running, stream: asyncio.StreamReader) -> None:
        width = max(len(r.spec.name) for r in self._running) if self._running else 8
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            running.tail.append(text)
            del running.tail[:-40]
            self._write(f"{running.spec.name:<{width}} | {text}")

    async def start(self, spec: ProcessSpec, *, ready_within: float = 60.0) -> None:
        """Start ``spec`` and wait until it is ready; raise :class:`StackError` if it is not."""
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        running = _Running(spec, process)
        self._running.append(running)
        running.pump = asyncio.create_task(self._pump(running, process.stdout))
        if spec.ready_url is None:
            return
        deadline = asyncio.get_running_loop().time() + ready_within
        while not await asyncio.to_thread(_probe, spec.ready_url):
            if process.returncode is not None:
                raise StackError(self._died(running))
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(
                    f"{spec.name} did not answer {spec.ready_url} within {ready_within} s"
                )
            await asyncio.sleep(0.1)

    @staticmethod
    def _died(running: _Running) -> str:
        tail = "\n".join(running.tail[-15:])
        return f"{running.spec.name} exited with code {running.process.returncode}:\n{tail}"

    async def wait_for_exit(self) -> str:
        """Block until any process exits; return a message saying which and why."""
        waits = {asyncio.create_task(r.process.wait()): r for r in self._running}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        running = waits[next(iter(done))]
        if running.pump is not None:
            await asyncio.wait_for(running.pump, timeout=2)
        return self._died(running)

    async def stop(self) -> None:
        """SIGTERM every process group, wait up to the grace period, SIGKILL the rest."""
        for running in reversed(self._running):
            if running.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGTERM)
        waits = [r.process.wait() for r in self._running]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout=self._grace)
        except TimeoutError:
            for running in self._running:
                if running.process.returncode is None:
                    self._write(f"{running.spec.name} did not stop in {self._grace} s: killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(running.process.pid, signal.SIGKILL)
            await asyncio.gather(*(r.process.wait() for r in self._running))
        for running in self._running:
            if running.pump is not None:
                running.pump.cancel()
