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


def startup_problems(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(malformed, missing)``: a line about a malformed variable, and one about a missing one.

    A malformed variable stops start-up; a missing one fails each job for good (permanent)
    with the same line, so a deployment without mail settings still answers its probes and
    dry runs.
    """
    try:
        settings = load(environ)
    except mailer.ConfigurationError as exc:
        return str(exc), None
    if settings.dry_run:
        return None, None
    try:
        mailer.load_settings(environ)
    except mailer.ConfigurationError as exc:
        text = str(exc)
        return (None, text) if text.startswith("Missing") else (text, None)
    return None, None
