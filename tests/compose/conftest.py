"""The compose stack for real: engine, base images, image builds, ``up --wait``, ``down -v``.

``stack`` (module scope) runs ``docker/engine.sh`` (installs and starts a Docker engine and
Compose v2 when missing; the tests skip, with its reason, only where no engine can run),
``docker/base-images.sh`` (the public base images, or local stand-ins where no registry
answers), builds the images and brings ``docker-compose.jobs.yml`` up under a project name of
its own (one per run), with every published port moved to a free one, so a stack a person
runs, or another test run, is untouched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.jobs.yml"
# own project per run: concurrent runs (and a stack a person runs) never meet
PROJECT = f"knative-jobs-test-{os.getpid()}"
ENGINE_CANNOT_RUN = 3
PORT_VARIABLES = (
    "POSTGRES_PORT",
    "JOBS_CALLBACK_PORT",
    "SIMPLE_EMAIL_PORT",
    "SEND_VERIFICATION_LINK_PORT",
    "GRAPHQL_PORT",
    "MAILPIT_PORT",
    "MAILPIT_SMTP_PORT",
)
BUILD_TIMEOUT = 1500.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; a failure shows its output."""
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result


@dataclass
class Stack:
    """One running ``docker-compose.jobs.yml`` project."""

    env: dict[str, str]
    ports: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)

    def compose(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose -p PROJECT -f docker-compose.jobs.yml ARGS``."""
        command = ["docker", "compose", "-p", PROJECT, "-f", str(COMPOSE_FILE), *args]
        return run(command, env=self.env, timeout=timeout, check=check)

    def jobs(
        self, *args: str, timeout: float = 90.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The ``jobs`` CLI inside the running job service container."""
        return self.compose("exec", "-T", "jobs", "jobs", *args, timeout=timeout, check=check)

    def container(self, service: str) -> dict[str, Any]:
        """``docker inspect`` of the service's container."""
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        inspected = json.loads(run(["docker", "inspect", ids[0]]).stdout)
        assert isinstance(inspected, list)
        result = inspected[0]
        assert isinstance(result, dict)
        return result

    def logs(self) -> str:
        """The last lines of every service's log (for failure messages)."""
        return self.compose("logs", "--no-color", "--tail", "40", check=False).stdout

    project: str = PROJECT

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``."""
        return run(["docker", *args], env=self.env, check=check)

    def image_size(self, image: str) -> int:
        """The image's size in bytes."""
        return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks that still carry the project's label."""
        return leftovers()


def leftovers() -> dict[str, list[str]]:
    """Containers, volumes and networks that still carry the test project's label."""
    label = f"label=com.docker.compose.project={PROJECT}"
    found = {}
    for kind, args in (
        ("containers", ["docker", "ps", "-a", "-q", "--filter", label]),
        ("volumes", ["docker", "volume", "ls", "-q", "--filter", label]),
        ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
    ):
        found[kind] = run(args).stdout.split()
    return found


def base_images(env: dict[str, str], env_file: Path) -> dict[str, str]:
    """Run docker/base-images.sh; the PYTHON_IMAGE / POSTGRES_IMAGE / MAILPIT_IMAGE it chose."""
    run(["bash", "docker/base-images.sh", str(env_file)], env=env, timeout=BUILD_TIMEOUT)
    images = {}
    for line in env_file.read_text().splitlines():
        name, _, value = line.partition("=")
        images[name] = value
    assert set(images) == {"PYTHON_IMAGE", "POSTGRES_IMAGE", "MAILPIT_IMAGE"}
    return images


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack built from this tree and up (every service healthy); ``down -v`` after."""
    engine = run(["bash", "docker/engine.sh"], timeout=900, check=False)
    if engine.returncode == ENGINE_CANNOT_RUN:
        reasons = engine.stderr.strip().splitlines() or ["no Docker engine can run here"]
        pytest.skip(reasons[-1])
    if engine.returncode != 0:
        pytest.fail(f"docker/engine.sh exited {engine.returncode}:\n{engine.stderr[-3000:]}")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "JOBS_"))}
    env["COMPOSE_BAKE"] = "false"
    env.update(base_images(env, tmp_path_factory.mktemp("compose") / "base-images.env"))
    ports = dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))
    env.update({name: str(port) for name, port in ports.items()})
    stack = Stack(env=env, ports=ports)

    stack.compose("down", "-v", "--remove-orphans", timeout=180)
    stack.compose("build", timeout=BUILD_TIMEOUT)
    up = stack.compose("up", "-d", "--wait", "--wait-timeout", "240", timeout=300, check=False)
    try:
        if up.returncode != 0:
            pytest.fail(f"compose up --wait failed:\n{up.stderr[-3000:]}\n{stack.logs()}")
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)
