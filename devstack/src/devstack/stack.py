"""What the local stack runs: the processes, their ports and their environment (pure).

The same stack as ``docker-compose.jobs.yml``, as processes on this machine: the job service
(worker, callback server, scheduler), both example functions, the development GraphQL API and a
local mail inbox. Functions send email by SMTP to the inbox, so nothing leaves the machine.

The job service and both functions share one signing secret, random per run
(:func:`new_secret`): dispatches and callbacks are signed as in production, and nothing else on
the machine can complete a job through the callback port.
"""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import dataclass, fields
from pathlib import Path

from devstack.supervisor import ProcessSpec

DEMO_DATABASE_ID = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
"""The database id the demo rows of the development GraphQL API describe."""

DEMO_HOST = "localhost"
"""The Host the development GraphQL API answers for (as the real Constructive server does)."""


@dataclass(frozen=True)
class Ports:
    """The TCP ports of the stack (all on 127.0.0.1)."""

    callback: int = 12345
    simple_email: int = 8081
    send_verification_link: int = 8082
    graphql: int = 8083
    inbox_web: int = 8025
    inbox_smtp: int = 1025

    @classmethod
    def free(cls) -> Ports:
        """A set of ports the kernel says are free right now."""
        sockets = []
        try:
            for _ in fields(cls):
                sock = socket.socket()
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()

    def busy(self) -> list[str]:
        """The names of the ports something else already listens on."""
        taken = []
        for item in fields(self):
            port = getattr(self, item.name)
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    taken.append(f"{item.name} ({port})")
        return taken


def function_urls(ports: Ports) -> dict[str, str]:
    """Task identifier → function URL, as the worker's ``INTERNAL_GATEWAY_DEVELOPMENT_MAP``."""
    return {
        "simple-email": f"http://127.0.0.1:{ports.simple_email}/",
        "email:send_verification_link": f"http://127.0.0.1:{ports.send_verification_link}/",
    }


def new_secret() -> str:
    """A fresh random signing secret (64 hex characters: 32 random bytes)."""
    return secrets.token_hex(32)


def signing_env(secret: str) -> dict[str, str]:
    """``JOBS_SIGNING_SECRET`` for a process, overriding any secret variable inherited from
    the calling shell (an empty value counts as unset)."""
    return {
        "JOBS_SIGNING_SECRET": secret,
        "JOBS_SIGNING_SECRET_FILE": "",
        "JOBS_SIGNING_SECRET_PREVIOUS": "",
        "JOBS_SIGNING_SECRET_PREVIOUS_FILE": "",
        "JOBS_INSECURE_CALLBACKS": "false",
    }


def build_stack(
    conninfo: str, ports: Ports, bin_dir: Path, secret: str | None = None
) -> list[ProcessSpec]:
    """The processes of the stack, in start order; ``secret`` (default: a new one) signs
    dispatches and callbacks between the job service and the functions."""
    signing = signing_env(secret or new_secret())
    db = {"DATABASE_URL": conninfo}
    smtp = {
        "EMAIL_SEND_USE_SMTP": "true",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(ports.inbox_smtp),
        "SMTP_FROM": "no-reply@localhost",
    }
    python = str(bin_dir / "python")
    return [
        ProcessSpec(
            name="inbox",
            argv=[python, "-m", "devstack.mailbox"],
            env={
                "MAILBOX_SMTP_PORT": str(ports.inbox_smtp),
                "MAILBOX_WEB_PORT": str(ports.inbox_web),
            },
            ready_url=f"http://127.0.0.1:{ports.inbox_web}/health",
        ),
        ProcessSpec(
            name="graphql",
            argv=[python, "-m", "devstack.graphql_api"],
            env={**db, "PORT": str(ports.graphql), "GRAPHQL_ALLOWED_HOST": DEMO_HOST},
            ready_url=f"http://127.0.0.1:{ports.graphql}/health",
        ),
        ProcessSpec(
            name="simple-email",
            argv=[str(bin_dir / "jobfn"), "serve", "simple_email", "--host", "127.0.0.1"],
            env={**smtp, **signing, "PORT": str(ports.simple_email)},
            ready_url=f"http://127.0.0.1:{ports.simple_email}/health/readiness",
        ),
        ProcessSpec(
            name="send-verification-link",
            argv=[str(bin_dir / "jobfn"), "serve", "send_verification_link", "--host", "127.0.0.1"],
            env={
                **smtp,
                **signing,
                "PORT": str(ports.send_verification_link),
                "GRAPHQL_URL": f"http://127.0.0.1:{ports.graphql}/graphql",
                "GRAPHQL_HOST_HEADER": DEMO_HOST,
                "META_GRAPHQL_HOST_HEADER": DEMO_HOST,
                "DEFAULT_DATABASE_ID": DEMO_DATABASE_ID,
                "LOCAL_APP_PORT": "3000",
            },
            ready_url=f"http://127.0.0.1:{ports.send_verification_link}/health/readiness",
        ),
        ProcessSpec(
            name="jobs",
            argv=[str(bin_dir / "jobs"), "worker"],
            env={
                **db,
                **signing,
                "HOSTNAME": "dev-worker-1",
                "INTERNAL_GATEWAY_DEVELOPMENT_MAP": json.dumps(function_urls(ports)),
                "INTERNAL_JOBS_CALLBACK_PORT": str(ports.callback),
                "JOBS_CALLBACK_BIND": "127.0.0.1",  # the local stack is not reachable from outside
                "INTERNAL_JOBS_CALLBACK_URL": f"http://127.0.0.1:{ports.callback}/callback",
            },
            ready_url=f"http://127.0.0.1:{ports.callback}/health/readiness",
        ),
    ]
