"""The ``simple-email`` job function: validate the payload, then send (or log, in a dry run)."""

from __future__ import annotations

import os

import mailer
from jobfn import ConfigError, JobContext, PermanentError, job_function
from simple_email import settings as settings_module
from simple_email.payload import SimpleEmail, to_message


def check_settings() -> None:
    """A missing or malformed variable stops start-up with one line naming it."""
    problem = settings_module.startup_problem(os.environ)
    if problem is not None:
        raise ConfigError(f"simple-email: {problem}")


@job_function(name="simple-email", timeout=120, on_startup=[check_settings])
def simple_email(payload: SimpleEmail, ctx: JobContext) -> dict[str, object]:
    """Send one email (``to``, ``subject``, ``html`` and/or ``text``, ``from``, ``replyTo``).

    A missing field or missing mail settings fail the job for good; a provider that is down
    or slow fails this attempt so the job is retried.
    """
    try:
        current = settings_module.load(os.environ)
        message = to_message(payload, current.default_sender)
    except mailer.MailerError as exc:
        raise PermanentError(str(exc)) from None
    if current.dry_run:
        ctx.logger.info("DRY RUN email (no send)", extra={"email": message.summary()})
        return {"dryRun": True}
    try:
        message_id = mailer.send(message)
    except mailer.MailerError as exc:
        if exc.retryable:
            raise
        raise PermanentError(str(exc)) from None
    ctx.logger.info("email sent", extra={"email": {**message.summary(), "messageId": message_id}})
    return {"messageId": message_id}
