"""The ``email:send_verification_link`` job function.

Validate the payload, read the site's configuration (``GetDatabaseInfo``) and, for invites, the
sender's name (``GetUser``); build the link; render the email; send it (or log it, dry run).
"""

from __future__ import annotations

import os

import mailer
from jobfn import ConfigError, JobContext, PermanentError, job_function
from send_verification_link import graphql
from send_verification_link import settings as settings_module
from send_verification_link.errors import InvalidJobError
from send_verification_link.links import app_base_url, email_content
from send_verification_link.payload import VerificationLink, is_uuid, missing_field
from send_verification_link.render import render
from send_verification_link.site import site_from


def check_settings() -> None:
    """A missing or malformed variable stops start-up with one line naming it.

    ``GRAPHQL_URL`` is always required; mail settings unless ``SEND_VERIFICATION_LINK_DRY_RUN``.
    """
    try:
        current = settings_module.load(os.environ)
        if not current.dry_run:
            mailer.load_settings(os.environ)
    except mailer.ConfigurationError as exc:
        raise ConfigError(f"send-verification-link: {exc}") from None
    if current.graphql_url is None:
        raise ConfigError(
            "send-verification-link: Missing required environment variable GRAPHQL_URL"
            " (the tenant GraphQL endpoint, e.g. http://constructive-server/graphql)"
        )


def _database_id(ctx: JobContext, default: str | None) -> str:
    database_id = ctx.database_id or default
    if not database_id:
        raise PermanentError("Missing X-Database-Id header or DEFAULT_DATABASE_ID")
    if not is_uuid(database_id):
        raise PermanentError(f"X-Database-Id must be a UUID (got {database_id!r})")
    return database_id


@job_function(name="email:send_verification_link", timeout=120, on_startup=[check_settings])
def send_verification_link(payload: VerificationLink, ctx: JobContext) -> dict[str, object]:
    """Send an invite, password-reset or email-verification link.

    Missing fields, missing site configuration and bad links fail the job for good; a GraphQL
    API or mail provider that fails or is slow fails this attempt so the job is retried.
    """
    try:
        current = settings_module.load(os.environ)
    except mailer.ConfigurationError as exc:
        raise PermanentError(str(exc)) from None
    missing = missing_field(payload)
    if missing is not None:
        raise PermanentError(f"Missing required field: {missing}")
    if payload.email_type == "invite_email" and not is_uuid(payload.sender_id or ""):
        raise PermanentError(
            f"Field 'sender_id' must be a user id (UUID), got {payload.sender_id!r}"
        )
    database_id = _database_id(ctx, current.default_database_id)
    if current.graphql_url is None:
        raise PermanentError("Missing required environment variable GRAPHQL_URL")
    try:
        site = site_from(graphql.database_info(graphql.meta_endpoint(current), database_id))
        sender_name = None
        if payload.email_type == "invite_email":
            tenant = graphql.tenant_endpoint(current, database_id)
            sender_name = graphql.user_display_name(tenant, payload.sender_id or "")
        content = email_content(
            payload, site, app_base_url(site, current.local_app_port), sender_name
        )
        message = mailer.Message.build(
            to=(payload.email or "").strip(),
            subject=content.subject,
            **render(content, site).bodies(),
        )
    except InvalidJobError as exc:
        raise PermanentError(str(exc)) from None
    except mailer.MailerError as exc:
        raise PermanentError(str(exc)) from None
    if current.dry_run:
        summary = {
            "email_type": payload.email_type,
            "email": message.to[0],
            "subject": message.subject,
            "link": mailer.mask_link(content.link),
        }
        ctx.logger.info("DRY RUN email (skipping send)", extra={"email": summary})
        return {"dryRun": True}
    try:
        message_id = mailer.send(message)
    except mailer.MailerError as exc:
        if exc.retryable:
            raise
        raise PermanentError(str(exc)) from None
    ctx.logger.info(
        "email sent",
        extra={
            "email": {
                "email_type": payload.email_type,
                "to": message.to[0],
                "subject": message.subject,
                "messageId": message_id,
            }
        },
    )
    return {"messageId": message_id}
