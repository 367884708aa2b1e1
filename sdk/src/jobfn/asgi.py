"""Calling a job function in-process through its ASGI interface (no HTTP, no sockets).

The worker's in-process dispatch and :mod:`jobfn.testing` both send a job to a
:class:`~jobfn.JobFunction` as an ASGI ``POST /``; this is the request scope they build, so the
function sees exactly what an HTTP server would give it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class InProcessCaller:
    """Who calls a function in-process, and what it vouches for.

    ``callback_urls``: callback URLs allowed even to a function without a secret (the worker's
    own callback endpoint; :mod:`jobfn.testing`'s captured one). ``vouched``: the caller is the
    job service itself, in this process: there is no network between them, so the dispatch
    needs no signature (a signature authenticates what crossed a network; the worker skips it
    in-process, which keeps in-process dispatch cheap).
    """

    callback_urls: frozenset[str] = frozenset()
    vouched: bool = False


in_process_caller: ContextVar[InProcessCaller | None] = ContextVar(
    "jobfn_in_process_caller", default=None
)
"""Set by an in-process caller around its ASGI call (never by anything a request carries)."""


def post_scope(
    headers: list[tuple[bytes, bytes]], *, server: tuple[str, int] = ("in-process", 0)
) -> dict[str, Any]:
    """The ASGI HTTP scope of a ``POST /`` carrying ``headers`` (lower-case names, bytes)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": server,
        "state": {},
    }
