"""Sending through the Mailgun HTTP API (``POST /v3/<domain>/messages``, multipart form)."""

from __future__ import annotations

import requests

from mailer.config import MailgunSettings
from mailer.errors import ConfigurationError, InvalidMessageError, RejectedError, TemporaryError
from mailer.message import Message, address_of


def dev_recipient(address: str, dev_email: str) -> str:
    """``a@b.c`` redirected to ``dev+a_at_b.c@<dev domain>`` (the ``MAILGUN_DEV_EMAIL`` rule)."""
    local, _, domain = address_of(dev_email).rpartition("@")
    mangled = address_of(address).replace("@", "_at_")
    return f"{local}+{mangled}@{domain}"


def form_fields(message: Message, settings: MailgunSettings) -> list[tuple[str, str]]:
    """The form fields of the Mailgun request, in order (pure)."""
    sender = message.sender or settings.sender
    if sender is None:
        raise ConfigurationError(
            "Missing sender: set MAILGUN_FROM or give the message a 'from' address"
        )
    recipients = message.to
    if settings.dev_email is not None:
        recipients = tuple(dev_recipient(item, settings.dev_email) for item in recipients)
    fields = [("from", sender), ("to", ",".join(recipients)), ("subject", message.subject)]
    if message.html is not None:
        fields.append(("html", message.html))
    if message.text is not None:
        fields.append(("text", message.text))
    reply_to = message.reply_to or settings.reply_to
    if reply_to is not None:
        fields.append(("h:Reply-To", reply_to))
    return fields


def _encoded(name: str, value: str) -> bytes:
    """A form field as UTF-8; a value that cannot be encoded is a message that cannot be built."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessageError(f"Field '{name}' is not valid Unicode text") from None


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text.strip()[:300]


def send_mailgun(
    message: Message, settings: MailgunSettings, session: requests.Session | None = None
) -> str:
    """Send ``message``; the id Mailgun gave it.

    5xx, 429, timeouts and connection errors raise :class:`TemporaryError`; other 4xx raise
    :class:`RejectedError` with Mailgun's reason.
    """
    fields = [(name, _encoded(name, value)) for name, value in form_fields(message, settings)]
    http = session or requests.Session()
    try:
        response = http.post(
            settings.messages_url,
            files=[(name, (None, value)) for name, value in fields],
            auth=("api", settings.api_key),
            timeout=settings.timeout,
        )
    except requests.Timeout:
        raise TemporaryError(
            f"Mailgun did not answer within {settings.timeout:g} s ({settings.messages_url})"
        ) from None
    except requests.RequestException as exc:
        raise TemporaryError(
            f"Could not reach Mailgun at {settings.messages_url}: {type(exc).__name__}"
        ) from None
    finally:
        if session is None:
            http.close()
    status = response.status_code
    if status >= 500 or status == 429:
        raise TemporaryError(f"Mailgun answered HTTP {status}: {_reason(response)}")
    if status == 401:
        raise RejectedError(
            "Mailgun refused the API key (HTTP 401): check MAILGUN_API_KEY and MAILGUN_API_URL"
        )
    if status >= 400:
        raise RejectedError(f"Mailgun refused the message (HTTP {status}): {_reason(response)}")
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("id", "")) if isinstance(body, dict) else ""
