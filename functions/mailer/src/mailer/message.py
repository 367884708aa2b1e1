"""An email to send, checked before it goes anywhere (pure).

Every header value (``to``, ``subject``, ``from``, ``replyTo``) is refused when it holds a line
break of any kind — CR, LF and every other character Python's ``str.splitlines`` breaks on
(``\\x0b``, ``\\x0c``, ``\\x1c`` to ``\\x1e``, ``\\x85``, ``\\u2028``, ``\\u2029``) — or another
control character, since a mail library or relay that folds or normalises them would let the
sender inject headers. Each address field holds exactly one address: ``a@b.c`` or
``Name <a@b.c>`` (the name may be quoted: ``"Doe, Jane" <j@d.c>``); a list smuggled into one
value (``a@b.c, c@d.e``, ``a@b.c; c@d.e``, a group ``g: a@b.c;``) is refused. Recipients are
given as several values instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailer.errors import InvalidMessageError

LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character ``str.splitlines`` treats as a line boundary."""

_LINE_BREAK = re.compile(f"[{re.escape(LINE_BREAKS)}]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_ADDRESS = re.compile(
    r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_PLAIN_NAME = re.compile(r"^[^<>(),;:\"@\[\]\\]*$")
_NAME_AND_ADDRESS = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>$")


def _valid_unicode(value: str) -> bool:
    """Whether ``value`` can be encoded (no lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_header(field: str, value: str) -> str:
    """``value`` unchanged, or :class:`InvalidMessageError` naming ``field`` and the problem.

    Refused: any line break (see :data:`LINE_BREAKS`), NUL and the other control characters
    except tab, and lone surrogates.
    """
    if _LINE_BREAK.search(value):
        raise InvalidMessageError(
            f"Field '{field}' must not contain line breaks (CR/LF or another Unicode line break)"
        )
    control = _CONTROL.search(value)
    if control is not None:
        raise InvalidMessageError(
            f"Field '{field}' must not contain control characters"
            f" (found U+{ord(control.group()):04X})"
        )
    if not _valid_unicode(value):
        raise InvalidMessageError(
            f"Field '{field}' is not valid Unicode text (it holds a lone surrogate)"
        )
    return value


def check_text(field: str, value: str) -> str:
    """A body (``html``/``text``): line breaks are fine, NUL and lone surrogates are not."""
    if "\x00" in value:
        raise InvalidMessageError(f"Field '{field}' must not contain NUL characters")
    if not _valid_unicode(value):
        raise InvalidMessageError(
            f"Field '{field}' is not valid Unicode text (it holds a lone surrogate)"
        )
    return value


def _one_address_problem(value: str) -> str | None:
    """Why ``value`` is not exactly one address (``a@b.c`` or ``Name <a@b.c>``), or ``None``."""
    unquoted = _QUOTED.sub('""', value)
    for separator in (",", ";", ":"):
        if separator in unquoted:
            return (
                f"must hold exactly one email address (found {separator!r}; give several"
                " recipients as several values)"
            )
    if unquoted.count("@") > 1 or unquoted.count("<") > 1:
        return "must hold exactly one email address"
    match = _NAME_AND_ADDRESS.match(value)
    name, address = ("", value) if match is None else (match["name"], match["address"].strip())
    if name and not (_QUOTED.fullmatch(name) or _PLAIN_NAME.match(name)):
        return 'must be an address or Name <address> (quote a name with specials: "Doe, J." <…>)'
    if not _ADDRESS.match(address):
        return "is not an email address"
    return None


def address_of(value: str) -> str:
    """The bare ``a@b.c`` of a checked ``a@b.c`` or ``Name <a@b.c>`` value (pure)."""
    match = _NAME_AND_ADDRESS.match(value.strip())
    return value.strip() if match is None else match["address"].strip()


def check_address(field: str, value: str) -> str:
    """``value`` (``a@b.c`` or ``Name <a@b.c>``) stripped, or :class:`InvalidMessageError`.

    The error names ``field`` and says what is expected: exactly one address per value.
    """
    value = check_header(field, value).strip()
    problem = _one_address_problem(value)
    if problem is not None:
        shown = value if len(value) <= 200 else value[:200] + "…"
        raise InvalidMessageError(f"Field '{field}' {problem}: {shown!r}")
    return value


@dataclass(frozen=True)
class Message:
    """One email: recipients, subject, an HTML and/or a text body, optional sender and reply-to.

    ``sender`` and ``reply_to`` left ``None`` take the configured defaults
    (``MAILGUN_FROM``/``SMTP_FROM``, ``MAILGUN_REPLY``). Build it with :meth:`build`, which
    checks every field.
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
        if not recipients or not all(isinstance(item, str) and item.strip() for item in recipients):
            raise InvalidMessageError("Missing required field 'to'")
        if not subject.strip():
            raise InvalidMessageError("Missing required field 'subject'")
        if not html and not text:
            raise InvalidMessageError("Either 'html' or 'text' must be provided")
        return cls(
            to=tuple(check_address("to", item) for item in recipients),
            subject=check_header("subject", subject),
            html=check_text("html", html) if html else None,
            text=check_text("text", text) if text else None,
            sender=None if sender is None else check_address("from", sender),
            reply_to=None if reply_to is None else check_address("replyTo", reply_to),
        )

    def checked(self) -> Message:
        """This message checked again as :meth:`build` does (for one constructed directly)."""
        return Message.build(
            to=self.to,
            subject=self.subject,
            html=self.html,
            text=self.text,
            sender=self.sender,
            reply_to=self.reply_to,
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
