"""An email to send, checked before it goes anywhere (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parseaddr

from mailer.errors import InvalidMessageError

_LINE_BREAK = re.compile(r"[\r\n\x00]")
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def check_header(field: str, value: str) -> str:
    """``value`` unchanged, or :class:`InvalidMessageError` when it holds CR, LF or NUL.

    A line break in a header value would let the sender inject headers of their own.
    """
    if _LINE_BREAK.search(value):
        raise InvalidMessageError(f"Field '{field}' must not contain line breaks (CR/LF)")
    return value


def check_address(field: str, value: str) -> str:
    """``value`` (``a@b.c`` or ``Name <a@b.c>``) stripped, or :class:`InvalidMessageError`."""
    value = check_header(field, value).strip()
    _, address = parseaddr(value)
    if not address or not _ADDRESS.match(address):
        raise InvalidMessageError(f"Field '{field}' is not an email address: {value!r}")
    return value


@dataclass(frozen=True)
class Message:
    """One email: recipients, subject, an HTML and/or a text body, optional sender and reply-to.

    ``sender`` and ``reply_to`` left ``None`` take the configured defaults
    (``MAILGUN_FROM``/``SMTP_FROM``, ``MAILGUN_REPLY``).
    """

    to: tuple[str, ...]
    subject: str
    html: str | None = None
    text: str | None = None
    sender: str | None = None
    reply_to: str | None = None

    @classmethod
    def build(
        cls,
        *,
        to: str | Iterable[str],
        subject: str,
        html: str | None = None,
        text: str | None = None,
        sender: str | None = None,
        reply_to: str | None = None,
    ) -> Message:
        """A checked message; :class:`InvalidMessageError` names the first bad field."""
        recipients = (to,) if isinstance(to, str) else tuple(to)
        if not recipients or not all(item.strip() for item in recipients):
            raise InvalidMessageError("Missing required field 'to'")
        if not subject.strip():
            raise InvalidMessageError("Missing required field 'subject'")
        if not html and not text:
            raise InvalidMessageError("Either 'html' or 'text' must be provided")
        return cls(
            to=tuple(check_address("to", item) for item in recipients),
            subject=check_header("subject", subject),
            html=html or None,
            text=text or None,
            sender=None if sender is None else check_address("from", sender),
            reply_to=None if reply_to is None else check_address("replyTo", reply_to),
        )

    def summary(self) -> dict[str, object]:
        """What a log line shows about the message (no bodies)."""
        return {
            "to": list(self.to),
            "subject": self.subject,
            "from": self.sender,
            "replyTo": self.reply_to,
            "hasHtml": self.html is not None,
            "hasText": self.text is not None,
        }
