"""Environment of the send-verification-link function.

| variable | meaning |
|---|---|
| ``GRAPHQL_URL`` | tenant GraphQL endpoint (``GetUser``); required |
| ``META_GRAPHQL_URL`` | meta GraphQL endpoint (``GetDatabaseInfo``); default ``GRAPHQL_URL`` |
| ``GRAPHQL_HOST_HEADER`` / ``META_GRAPHQL_HOST_HEADER`` | ``Host`` sent to each endpoint |
| ``GRAPHQL_AUTH_TOKEN`` | sent as ``Authorization: Bearer …`` to both |
| ``GRAPHQL_API_NAME`` / ``GRAPHQL_SCHEMATA`` | sent as ``X-Api-Name`` / ``X-Schemata`` (tenant) |
| ``GRAPHQL_TIMEOUT`` | seconds allowed for one GraphQL request (default 10) |
| ``DEFAULT_DATABASE_ID`` | database id when the job has no ``X-Database-Id`` |
| ``LOCAL_APP_PORT`` | port of links to a local host (``localhost``, ``*.localhost``) |
| ``SEND_VERIFICATION_LINK_DRY_RUN`` | ``true``: log, do not send (or ``SEND_EMAIL_LINK_DRY_RUN``) |
| ``EMAIL_SEND_USE_SMTP``, ``MAILGUN_*``, ``SMTP_*`` | how to send (see :mod:`mailer.config`) |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mailer import env
from send_verification_link.payload import is_uuid

DEFAULT_GRAPHQL_TIMEOUT = 10.0

_HOST_HEADER = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$")


@dataclass(frozen=True)
class Settings:
    """Everything the function reads from its environment, checked."""

    graphql_url: str | None
    meta_graphql_url: str | None
    host_header: str | None = None
    meta_host_header: str | None = None
    auth_token: str | None = None
    api_name: str | None = None
    schemata: str | None = None
    default_database_id: str | None = None
    local_app_port: int | None = None
    dry_run: bool = False
    timeout: float = DEFAULT_GRAPHQL_TIMEOUT


def _host_header(environ: Mapping[str, str], name: str) -> str | None:
    value = env.text(environ, name)
    if value is not None and not _HOST_HEADER.match(value):
        raise env.invalid(name, "a host name, optionally with :port", value)
    return value


def _header_value(environ: Mapping[str, str], name: str) -> str | None:
    value = env.text(environ, name)
    if value is not None and any(char in value for char in "\r\n\x00"):
        raise env.invalid(name, "a value without line breaks")
    return value


def load(environ: Mapping[str, str]) -> Settings:
    """Settings from ``environ``; :class:`mailer.ConfigurationError` names a malformed variable.

    A missing ``GRAPHQL_URL`` is not an error here (``graphql_url`` is ``None``): each job then
    fails for good naming it.
    """
    graphql_url = env.http_url(environ, "GRAPHQL_URL")
    default_database_id = env.text(environ, "DEFAULT_DATABASE_ID")
    if default_database_id is not None and not is_uuid(default_database_id):
        raise env.invalid("DEFAULT_DATABASE_ID", "a UUID", default_database_id)
    local_port = env.text(environ, "LOCAL_APP_PORT")
    dry_run_name = (
        "SEND_VERIFICATION_LINK_DRY_RUN"
        if "SEND_VERIFICATION_LINK_DRY_RUN" in environ
        else "SEND_EMAIL_LINK_DRY_RUN"
    )
    return Settings(
        graphql_url=graphql_url,
        meta_graphql_url=env.http_url(environ, "META_GRAPHQL_URL", default=graphql_url),
        host_header=_host_header(environ, "GRAPHQL_HOST_HEADER"),
        meta_host_header=_host_header(environ, "META_GRAPHQL_HOST_HEADER"),
        auth_token=_header_value(environ, "GRAPHQL_AUTH_TOKEN"),
        api_name=_header_value(environ, "GRAPHQL_API_NAME"),
        schemata=_header_value(environ, "GRAPHQL_SCHEMATA"),
        default_database_id=default_database_id,
        local_app_port=(
            None
            if local_port is None
            else env.integer(environ, "LOCAL_APP_PORT", default=0, minimum=1)
        ),
        dry_run=env.flag(environ, dry_run_name),
        timeout=env.seconds(environ, "GRAPHQL_TIMEOUT", default=DEFAULT_GRAPHQL_TIMEOUT),
    )
