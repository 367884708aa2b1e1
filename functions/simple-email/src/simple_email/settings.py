"""Environment of the simple-email function.

| variable | meaning |
|---|---|
| ``SIMPLE_EMAIL_DRY_RUN`` | ``true``: log what would be sent, send nothing, complete the job |
| ``EMAIL_SEND_USE_SMTP``, ``MAILGUN_*``, ``SMTP_*`` | how to send (see :mod:`mailer.config`) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import mailer
from mailer import env


@dataclass(frozen=True)
class Settings:
    """The function's settings: dry run, or how to send."""

    dry_run: bool
    default_sender: str | None


def load(environ: Mapping[str, str]) -> Settings:
    """Settings from ``environ``; :class:`mailer.ConfigurationError` names a malformed variable."""
    return Settings(
        dry_run=env.flag(environ, "SIMPLE_EMAIL_DRY_RUN"),
        default_sender=mailer.default_sender(environ),
    )


def startup_problem(environ: Mapping[str, str]) -> str | None:
    """One line naming a missing or malformed variable, or ``None`` when the settings are usable.

    A dry run needs no mail settings; otherwise the chosen way of sending (Mailgun, or SMTP with
    ``EMAIL_SEND_USE_SMTP``) must be fully configured.
    """
    try:
        settings = load(environ)
        if not settings.dry_run:
            mailer.load_settings(environ)
    except mailer.ConfigurationError as exc:
        return str(exc)
    return None
