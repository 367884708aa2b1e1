"""Calling a job function in-process through its ASGI interface (no HTTP, no sockets).

The worker's in-process dispatch and :mod:`jobfn.testing` both send a job to a
:class:`~jobfn.JobFunction` as an ASGI ``POST /``; this is the request scope they build, so the
function sees exactly what an HTTP server would give it.
"""

from __future__ import annotations

from typing import Any


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
