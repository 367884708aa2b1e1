"""The one entry point for sending: choose Mailgun or SMTP from the settings."""

from __future__ import annotations

import os
from collections.abc import Mapping

from mailer.config import MailgunSettings, Settings, load_settings
from mailer.mailgun import send_mailgun
from mailer.message import Message
from mailer.smtp import send_smtp


def send(
    message: Message,
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """Send ``message``; the provider's id for it.

    Without ``settings`` they are read from ``environ`` (default ``os.environ``). Raises a
    :class:`mailer.MailerError` whose ``retryable`` says whether trying later may help; a
    message that cannot be built (checked again here, whoever constructed it) raises
    :class:`mailer.InvalidMessageError`, which is not retryable.
    """
    message = message.checked()
    if settings is None:
        settings = load_settings(os.environ if environ is None else environ)
    if isinstance(settings, MailgunSettings):
        return send_mailgun(message, settings)
    return send_smtp(message, settings)
