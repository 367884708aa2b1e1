"""A local mail inbox: an SMTP server (aiosmtpd) that keeps messages and a page that shows them.

Run: ``python -m devstack.mailbox`` (env ``MAILBOX_SMTP_PORT`` default 1025,
``MAILBOX_WEB_PORT`` default 8025, ``MAILBOX_HOST`` default 127.0.0.1). The web side answers
``GET /`` (an HTML list), ``GET /api/messages`` (JSON, newest first, with ``to``, ``from``,
``subject``, ``text``, ``html``...), ``GET /api/messages/{id}``, ``DELETE /api/messages``,
``GET /messages/{id}/html`` (the HTML body, sandboxed) and ``GET /health``. Every message is
also logged in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import os
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("devstack.mailbox")

DEFAULT_SMTP_PORT = 1025
DEFAULT_WEB_PORT = 8025
MAX_MESSAGES = 500
_HTML_BODY_POLICY = "sandbox; default-src 'none'; img-src *; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class StoredMessage:
    """One received email."""

    id: int
    received_at: str
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    from_header: str
    to_header: str
    reply_to: str | None
    text: str | None
    html: str | None
    headers: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The message as the JSON API shows it (``from``/``to`` are the headers)."""
        data = asdict(self)
        data["from"] = data.pop("from_header")
        data["to"] = data.pop("to_header")
        return data


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


class Mailbox:
    """The messages received so far (the newest ``limit`` of them)."""

    def __init__(self, limit: int = MAX_MESSAGES) -> None:
        self._messages: deque[StoredMessage] = deque(maxlen=limit)
        self._next_id = 1

    def store(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> StoredMessage:
        """Parse and keep one message."""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        stored = StoredMessage(
            id=self._next_id,
            received_at=datetime.now(UTC).isoformat(),
            mail_from=mail_from,
            rcpt_tos=list(rcpt_tos),
            subject=str(parsed.get("Subject", "")),
            from_header=str(parsed.get("From", "")),
            to_header=str(parsed.get("To", "")),
            reply_to=str(parsed["Reply-To"]) if parsed.get("Reply-To") else None,
            text=_body(parsed, "plain"),
            html=_body(parsed, "html"),
            headers={key: str(value) for key, value in parsed.items()},
        )
        self._next_id += 1
        self._messages.append(stored)
        return stored

    @property
    def messages(self) -> list[StoredMessage]:
        """Newest first."""
        return list(reversed(self._messages))

    def get(self, message_id: int) -> StoredMessage | None:
        """The message with this id, if still kept."""
        return next((item for item in self._messages if item.id == message_id), None)

    def clear(self) -> None:
        """Forget every message."""
        self._messages.clear()


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        stored = self.mailbox.store(
            str(envelope.mail_from or ""), [str(item) for item in envelope.rcpt_tos], raw
        )
        log.info("mail #%d to %s: %s", stored.id, ", ".join(stored.rcpt_tos), stored.subject)
        return "250 Message accepted for delivery"


async def start_smtp(mailbox: Mailbox, host: str, port: int) -> asyncio.Server:
    """An SMTP server on ``host:port`` (0 picks a free port) storing into ``mailbox``."""
    loop = asyncio.get_running_loop()
    handler = _Handler(mailbox)
    return await loop.create_server(
        lambda: SMTP(handler, hostname="mailbox.local", ident="devstack mailbox"), host, port
    )


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Local inbox</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:left}}
tr:nth-child(even){{background:#f4f4f4}}</style></head>
<body><h1>Local inbox</h1><p>{count} message(s), newest first.
JSON: <a href="/api/messages">/api/messages</a></p>
<table><tr><th>#</th><th>received</th><th>to</th><th>subject</th><th>bodies</th></tr>
{rows}</table></body></html>
"""


def _row(item: StoredMessage) -> str:
    links = [f'<a href="/api/messages/{item.id}">json</a>']
    if item.html is not None:
        links.append(f'<a href="/messages/{item.id}/html">html</a>')
    cells = [
        str(item.id),
        html.escape(item.received_at),
        html.escape(", ".join(item.rcpt_tos)),
        html.escape(item.subject),
        " ".join(links),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def create_web_app(mailbox: Mailbox) -> Starlette:
    """The web side of the inbox."""

    def _message(request: Request) -> StoredMessage | None:
        try:
            return mailbox.get(int(request.path_params["message_id"]))
        except ValueError:
            return None

    async def index(request: Request) -> HTMLResponse:
        messages = mailbox.messages
        rows = "\n".join(_row(item) for item in messages)
        return HTMLResponse(_PAGE.format(count=len(messages), rows=rows))

    async def listing(request: Request) -> JSONResponse:
        return JSONResponse([item.as_json() for item in mailbox.messages])

    async def clear(request: Request) -> Response:
        mailbox.clear()
        return Response(status_code=204)

    async def one(request: Request) -> JSONResponse:
        item = _message(request)
        if item is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return JSONResponse(item.as_json())

    async def html_body(request: Request) -> Response:
        item = _message(request)
        if item is None or item.html is None:
            return JSONResponse({"error": "no such HTML body"}, status_code=404)
        return HTMLResponse(
            item.html,
            headers={"Content-Security-Policy": _HTML_BODY_POLICY},
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/messages", listing, methods=["GET"]),
            Route("/api/messages", clear, methods=["DELETE"]),
            Route("/api/messages/{message_id}", one, methods=["GET"]),
            Route("/messages/{message_id}/html", html_body, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def _port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SystemExit(f"mailbox: {name} must be a TCP port number (got {value!r})")
    return port


async def run(host: str, smtp_port: int, web_port: int) -> None:
    """Serve SMTP and the web page until cancelled."""
    mailbox = Mailbox()
    smtp = await start_smtp(mailbox, host, smtp_port)
    config = uvicorn.Config(
        create_web_app(mailbox), host=host, port=web_port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    log.info("mailbox: SMTP on %s:%d, inbox on http://%s:%d/", host, smtp_port, host, web_port)
    try:
        await server.serve()
    finally:
        smtp.close()
        await smtp.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m devstack.mailbox``."""
    parser = argparse.ArgumentParser(prog="python -m devstack.mailbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("MAILBOX_HOST", "127.0.0.1"))
    parser.add_argument(
        "--smtp-port", default=os.environ.get("MAILBOX_SMTP_PORT", str(DEFAULT_SMTP_PORT))
    )
    parser.add_argument(
        "--web-port", default=os.environ.get("MAILBOX_WEB_PORT", str(DEFAULT_WEB_PORT))
    )
    args = parser.parse_args(argv)
    smtp_port = _port("MAILBOX_SMTP_PORT", args.smtp_port)
    web_port = _port("MAILBOX_WEB_PORT", args.web_port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args.host, smtp_port, web_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
