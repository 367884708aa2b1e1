"""SMTP catcher with a web inbox: the Mailpit stand-in for machines without its public image.

Accepts every message on SMTP port 1025 and keeps it in memory; port 8025 serves an inbox page
(``/``) and the part of Mailpit's JSON API that tools read: ``GET /api/v1/messages`` (newest
first), ``GET /api/v1/message/<ID>``, ``DELETE /api/v1/messages`` and ``GET /livez``.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import signal
import threading
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP

SMTP_PORT = 1025
HTTP_PORT = 8025

_lock = threading.Lock()
_messages: list[dict[str, Any]] = []
_ids = itertools.count(1)


def _addresses(message: EmailMessage, header: str) -> list[dict[str, str]]:
    found = message.get(header)
    if found is None:
        return []
    result = []
    for address in getattr(found, "addresses", ()):
        if isinstance(address, Address):
            result.append({"Name": address.display_name, "Address": address.addr_spec})
    return result


def _part(message: EmailMessage, subtype: str) -> str:
    body = message.get_body(preferencelist=(subtype,))
    return "" if body is None else str(body.get_content())


def parse(raw: bytes) -> dict[str, Any]:
    """One received message in Mailpit's JSON shape."""
    message = message_from_bytes(raw, _class=EmailMessage, policy=policy.default)
    assert isinstance(message, EmailMessage)
    senders = _addresses(message, "From")
    return {
        "ID": str(next(_ids)),
        "From": senders[0] if senders else {"Name": "", "Address": ""},
        "To": _addresses(message, "To"),
        "Subject": str(message.get("Subject", "")),
        "Created": datetime.now(UTC).isoformat(),
        "Text": _part(message, "plain"),
        "HTML": _part(message, "html"),
        "Size": len(raw),
    }


class _Handler:
    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # noqa: N802
        stored = parse(bytes(envelope.original_content or envelope.content))
        with _lock:
            _messages.append(stored)
        return "250 Message accepted"


class _Inbox(BaseHTTPRequestHandler):
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: object) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        with _lock:
            newest_first = list(reversed(_messages))
        if self.path in ("/livez", "/readyz"):
            self._send(200, b"ok", "text/plain")
        elif self.path.startswith("/api/v1/messages"):
            summaries = [
                {k: v for k, v in m.items() if k not in ("Text", "HTML")} for m in newest_first
            ]
            count = len(summaries)
            self._json(200, {"total": count, "count": count, "messages": summaries})
        elif self.path.startswith("/api/v1/message/"):
            wanted = self.path.rsplit("/", 1)[1]
            found = [m for m in newest_first if m["ID"] == wanted]
            if found:
                self._json(200, found[0])
            else:
                self._json(404, {"error": "not found"})
        elif self.path == "/":
            rows = "".join(
                f"<li><b>{html.escape(m['Subject'])}</b> to "
                f"{html.escape(', '.join(t['Address'] for t in m['To']))}"
                f"<pre>{html.escape(m['Text'])}</pre></li>"
                for m in newest_first
            )
            title = f"<title>Inbox</title><h1>Inbox ({len(newest_first)})</h1>"
            page = f"<!doctype html>{title}<ul>{rows}</ul>"
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._json(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if self.path.startswith("/api/v1/messages"):
            with _lock:
                _messages.clear()
            self._send(200, b"ok", "text/plain")
        else:
            self._json(404, {"error": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request."""


async def main() -> None:
    """Serve SMTP and the inbox until the process is stopped."""
    inbox = ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), _Inbox)
    threading.Thread(target=inbox.serve_forever, daemon=True).start()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(_Handler()), "0.0.0.0", SMTP_PORT)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"mailcatcher: SMTP on :{SMTP_PORT}, inbox on http://0.0.0.0:{HTTP_PORT}/")
    await stop.wait()
    server.close()
    inbox.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
