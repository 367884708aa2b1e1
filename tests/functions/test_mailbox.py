"""The local inbox: a real SMTP server that keeps messages and shows them on a web page."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    def __init__(self, log: Path) -> None:
        self.smtp_port = _free_port()
        self.web = f"http://127.0.0.1:{_free_port()}"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack.mailbox"],
                env={
                    "MAILBOX_SMTP_PORT": str(self.smtp_port),
                    "MAILBOX_WEB_PORT": self.web.rsplit(":", 1)[1],
                },
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"mailbox exited: {log.read_text()}")
            try:
                if httpx.get(f"{self.web}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mailbox did not start: {log.read_text()}")
            time.sleep(0.05)  # no event to await: poll the port with a bounded deadline

    def send(self, subject: str, text: str, html: str | None = None) -> None:
        message = EmailMessage()
        message["From"] = "sender@example.test"
        message["To"] = "reader@example.test"
        message["Subject"] = subject
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as client:
            client.send_message(message)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    box = Inbox(tmp_path / "mailbox.log")
    try:
        yield box
    finally:
        box.stop()


def test_keeps_what_arrives_by_smtp_and_lists_it_as_json(inbox: Inbox) -> None:
    inbox.send("First", "one")
    inbox.send("Second", "two", html="<p>two</p>")

    listing = httpx.get(f"{inbox.web}/api/messages").json()
    assert [item["subject"] for item in listing] == ["Second", "First"]
    assert listing[0]["rcpt_tos"] == ["reader@example.test"]
    assert listing[0]["to"] == "reader@example.test"
    assert listing[0]["from"] == "sender@example.test"
    newest = httpx.get(f"{inbox.web}/api/messages/{listing[0]['id']}").json()
    assert newest["text"].strip() == "two"
    assert newest["html"].strip() == "<p>two</p>"
    body = httpx.get(f"{inbox.web}/messages/{listing[0]['id']}/html")
    assert body.text.strip() == "<p>two</p>"
    assert "sandbox" in body.headers["content-security-policy"]


def test_the_page_escapes_what_it_shows(inbox: Inbox) -> None:
    inbox.send("<b>bold</b> subject", "x")

    page = httpx.get(f"{inbox.web}/").text
    assert "&lt;b&gt;bold&lt;/b&gt; subject" in page
    assert "<b>bold</b>" not in page


def test_delete_empties_the_inbox(inbox: Inbox) -> None:
    inbox.send("Gone", "soon")
    assert httpx.delete(f"{inbox.web}/api/messages").status_code == 204
    assert httpx.get(f"{inbox.web}/api/messages").json() == []
    assert httpx.get(f"{inbox.web}/messages/1").status_code == 404
