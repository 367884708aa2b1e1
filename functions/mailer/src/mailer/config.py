"""Environment → how to send: the Mailgun HTTP API, or SMTP when ``EMAIL_SEND_USE_SMTP`` is set.

| variable | meaning |
|---|---|
| ``EMAIL_SEND_USE_SMTP`` | ``true`` sends by SMTP instead of Mailgun (default ``false``) |
| ``EMAIL_SEND_TIMEOUT`` | seconds allowed for one send call (default 15) |
| ``MAILGUN_API_KEY`` / ``MAILGUN_KEY`` | Mailgun API key (either name) |
| ``MAILGUN_DOMAIN`` | the sending domain, e.g. ``mg.example.com`` |
| ``MAILGUN_FROM`` | default sender |
| ``MAILGUN_REPLY`` | default ``Reply-To`` |
| ``MAILGUN_API_URL`` | API base, default ``https://api.mailgun.net`` (EU: ``api.eu.mailgun.net``) |
| ``MAILGUN_DEV_EMAIL`` | redirect every recipient ``a@b.c`` to ``dev+a_at_b.c@…`` of this address |
| ``SMTP_HOST`` / ``SMTP_PORT`` | SMTP server (port default 25, 587 with STARTTLS, 465 with TLS) |
| ``SMTP_USER`` / ``SMTP_PASSWORD`` | login, when the server needs one |
| ``SMTP_FROM`` | default sender in SMTP mode |
| ``SMTP_TLS`` / ``SMTP_STARTTLS`` | implicit TLS / upgrade with STARTTLS (default both ``false``) |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailer import env
from mailer.errors import InvalidMessageError
from mailer.message import check_address

DEFAULT_MAILGUN_API_URL = "https://api.mailgun.net"
DEFAULT_TIMEOUT = 15.0

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


@dataclass(frozen=True)
class MailgunSettings:
    """Sending through the Mailgun HTTP API."""

    api_key: str
    domain: str
    api_url: str = DEFAULT_MAILGUN_API_URL
    sender: str | None = None
    reply_to: str | None = None
    dev_email: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def messages_url(self) -> str:
        """``{api_url}/v3/{domain}/messages``."""
        return f"{self.api_url}/v3/{self.domain}/messages"


@dataclass(frozen=True)
class SmtpSettings:
    """Sending through an SMTP server."""

    host: str
    port: int
    sender: str | None = None
    user: str | None = None
    password: str | None = None
    tls: bool = False
    starttls: bool = False
    timeout: float = DEFAULT_TIMEOUT


Settings = MailgunSettings | SmtpSettings


def _optional_address(environ: Mapping[str, str], name: str) -> str | None:
    value = env.text(environ, name)
    if value is None:
        return None
    try:
        return check_address(name, value)
    except InvalidMessageError:
        raise env.invalid(name, "an email address", value) from None


def load_settings(environ: Mapping[str, str]) -> Settings:
    """The sending settings the environment describes.

    Raises :class:`ConfigurationError` with one line naming the first missing or malformed
    variable.
    """
    timeout = env.seconds(environ, "EMAIL_SEND_TIMEOUT", default=DEFAULT_TIMEOUT)
    if env.flag(environ, "EMAIL_SEND_USE_SMTP"):
        tls = env.flag(environ, "SMTP_TLS")
        starttls = env.flag(environ, "SMTP_STARTTLS")
        if tls and starttls:
            raise env.invalid("SMTP_STARTTLS", "false when SMTP_TLS is true (set only one)")
        default_port = 465 if tls else 587 if starttls else 25
        user = env.text(environ, "SMTP_USER")
        password = environ.get("SMTP_PASSWORD") or None
        if password is not None and user is None:
            raise env.invalid("SMTP_USER", "a user name when SMTP_PASSWORD is set (not set)")
        return SmtpSettings(
            host=env.required(environ, "SMTP_HOST", "the SMTP server's host name"),
            port=env.integer(environ, "SMTP_PORT", default=default_port, minimum=1),
            sender=_optional_address(environ, "SMTP_FROM"),
            user=user,
            password=password,
            tls=tls,
            starttls=starttls,
            timeout=timeout,
        )
    api_key = env.text(environ, "MAILGUN_API_KEY") or env.text(environ, "MAILGUN_KEY")
    if api_key is None:
        raise env.invalid(
            "MAILGUN_API_KEY",
            "the Mailgun API key (MAILGUN_KEY is also accepted), or EMAIL_SEND_USE_SMTP=true"
            " to send by SMTP (not set)",
        )
    domain = env.required(environ, "MAILGUN_DOMAIN", "the Mailgun sending domain")
    if not _HOSTNAME.match(domain):
        raise env.invalid("MAILGUN_DOMAIN", "a bare domain name", domain)
    api_url = env.http_url(environ, "MAILGUN_API_URL", default=DEFAULT_MAILGUN_API_URL)
    return MailgunSettings(
        api_key=api_key,
        domain=domain,
        api_url=api_url or DEFAULT_MAILGUN_API_URL,
        sender=_optional_address(environ, "MAILGUN_FROM"),
        reply_to=_optional_address(environ, "MAILGUN_REPLY"),
        dev_email=_optional_address(environ, "MAILGUN_DEV_EMAIL"),
        timeout=timeout,
    )


def default_sender(environ: Mapping[str, str]) -> str | None:
    """The configured default sender of the active mode (``SMTP_FROM`` or ``MAILGUN_FROM``)."""
    name = "SMTP_FROM" if env.flag(environ, "EMAIL_SEND_USE_SMTP") else "MAILGUN_FROM"
    return env.text(environ, name)
