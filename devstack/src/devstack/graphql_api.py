"""The development GraphQL API: ``GetDatabaseInfo`` and ``GetUser`` from demo rows.

A small stand-in for the Constructive admin server, enough for the send-verification-link
function: ``POST /graphql`` with a GraphQL-over-HTTP JSON body is answered by operation name
with ``{"data": ...}`` (or ``{"errors": [...]}``), from the demo rows of ``demo.sql`` (schema
``devstack``, created on start). Like the real server it only answers for its configured
``Host`` (``GRAPHQL_ALLOWED_HOST``); other hosts get 404.

Run: ``python -m devstack.graphql_api`` (env ``DATABASE_URL`` or ``PG*``, ``PORT`` default
8083, ``HOST`` default 127.0.0.1, ``GRAPHQL_ALLOWED_HOST`` default ``localhost``; comma-separated
for several).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Collection, Sequence
from importlib import resources
from typing import Any

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.database import configured_conninfo

log = logging.getLogger("devstack.graphql_api")

DEFAULT_PORT = 8083
DEFAULT_ALLOWED_HOST = "localhost"
DEMO_USER_ID = "9a5b1e3c-7d42-4c8e-b1f0-2e6d8c4a7b19"
"""The demo user's id (``sender_id`` of an invite)."""

# operation name → (variable, SQL function answering it)
OPERATIONS: dict[str, tuple[str, str]] = {
    "GetDatabaseInfo": ("databaseId", "SELECT devstack.get_database_info(%s::uuid)"),
    "GetUser": ("userId", "SELECT devstack.get_user(%s::uuid)"),
}

_OPERATION_NAME = re.compile(r"\b(?:query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")


def demo_sql() -> str:
    """The text of ``demo.sql``."""
    return resources.files("devstack").joinpath("demo.sql").read_text(encoding="utf-8")


def install_demo(conninfo: str) -> None:
    """Create the ``devstack`` schema, its functions and the demo rows (idempotent)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(demo_sql().encode())


def _errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": text} for text in messages]}, status_code=status)


def request_host(request: Request) -> str:
    """The request's ``Host`` without its port, lower case."""
    host = request.headers.get("host", "").strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rsplit(":", 1)[0] if ":" in host else host


def operation_of(body: dict[str, Any]) -> str | None:
    """``operationName``, else the name of the first operation in ``query``."""
    name = body.get("operationName")
    if isinstance(name, str) and name:
        return name
    match = _OPERATION_NAME.search(str(body.get("query", "")))
    return match.group(1) if match else None


def create_app(conninfo: str, allowed_hosts: Collection[str]) -> Starlette:
    """The ASGI app answering for ``allowed_hosts`` from the database at ``conninfo``."""
    hosts = {host.strip().lower() for host in allowed_hosts if host.strip()}

    async def graphql(request: Request) -> JSONResponse:
        host = request_host(request)
        if host not in hosts:
            return _errors(404, f"No API is configured for host {host!r}")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _errors(400, "The request body must be a JSON object")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _errors(400, "The request body must be a JSON object with a 'query' string")
        name = operation_of(body)
        if name not in OPERATIONS:
            return _errors(
                400,
                f"Unknown operation {name!r}: this development API answers only "
                + " and ".join(sorted(OPERATIONS)),
            )
        variable, statement = OPERATIONS[name]
        variables = body.get("variables") or {}
        value = variables.get(variable) if isinstance(variables, dict) else None
        try:
            uuid.UUID(str(value))
        except ValueError:
            return _errors(
                200,
                f'Variable "${variable}" got invalid value {json.dumps(value)};'
                " Expected type UUID.",
            )
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                cursor = await conn.execute(statement, (str(value),))
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            log.error("%s failed: %s", name, exc)
            return _errors(500, f"{name} failed: {type(exc).__name__}")
        data = row[0] if row else None
        log.info("%s %s=%s", name, variable, value)
        return JSONResponse({"data": data})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.graphql_api", description="The development GraphQL API"
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", default=os.environ.get("PORT", str(DEFAULT_PORT)))
    parser.add_argument(
        "--database-url", default=None, help="conninfo (default: DATABASE_URL, else PG*)"
    )
    parser.add_argument(
        "--allowed-host",
        default=os.environ.get("GRAPHQL_ALLOWED_HOST", DEFAULT_ALLOWED_HOST),
        help="Host header(s) answered, comma-separated (default: GRAPHQL_ALLOWED_HOST)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Install the demo rows and serve the API until interrupted."""
    args = _parser().parse_args(argv)
    conninfo = args.database_url if args.database_url is not None else configured_conninfo()
    if conninfo is None:
        print("graphql_api: set DATABASE_URL (or PGHOST/PGDATABASE/...)", file=sys.stderr)
        return 2
    try:
        port = int(args.port)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        print(f"graphql_api: PORT must be a TCP port number (got {args.port!r})", file=sys.stderr)
        return 2
    try:
        install_demo(conninfo)
    except psycopg.Error as exc:
        print(f"graphql_api: cannot install the demo rows: {exc}".strip(), file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    hosts = [item for item in args.allowed_host.split(",") if item.strip()]
    uvicorn.run(create_app(conninfo, hosts), host=args.host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
