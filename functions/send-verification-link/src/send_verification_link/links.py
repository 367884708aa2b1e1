"""The link, subject and texts of each email type, built as the reference builds them (pure)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote_plus

from send_verification_link.errors import InvalidJobError
from send_verification_link.payload import VerificationLink, is_org_invite
from send_verification_link.site import Site

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class EmailContent:
    """What the email says: subject, link, the line under the title and the button text."""

    subject: str
    link: str
    sub_message: str
    link_text: str


def valid_hostname(hostname: str) -> bool:
    """Whether ``hostname`` is a DNS name (RFC 1123 labels) or a dotted IPv4 address."""
    if not 0 < len(hostname) <= 253:
        return False
    return all(_LABEL.match(label) for label in hostname.split("."))


def app_base_url(site: Site, local_app_port: int | None) -> str:
    """``https://<host>``, or ``http://<host>:<LOCAL_APP_PORT>`` for a local host.

    The host is ``<subdomain>.<domain>``, or just the domain when there is no subdomain or the
    domain is local (``localhost…``, ``0.0.0.0``). A host that is not a valid host name is
    refused (:class:`InvalidJobError`).
    """
    domain = site.domain
    local_domain = domain.startswith("localhost") or domain == "0.0.0.0"
    hostname = f"{site.subdomain}.{domain}" if site.subdomain and not local_domain else domain
    if not valid_hostname(hostname):
        raise InvalidJobError(
            f"Site domain {hostname!r} is not a valid host name; no link can be built"
        )
    local_host = (
        hostname.startswith("localhost")
        or hostname.startswith("0.0.0.0")
        or hostname.endswith(".localhost")
    )
    if local_host and local_app_port:
        return f"http://{hostname}:{local_app_port}"
    return f"https://{hostname}"


def form_encode(pairs: Sequence[tuple[str, str]]) -> str:
    """``URLSearchParams`` form encoding: ``@``→``%40``, ``/``→``%2F``, space→``+``."""
    return "&".join(
        f"{quote_plus(key, safe='*')}={quote_plus(value, safe='*')}".replace("~", "%7E")
        for key, value in pairs
    )


def email_content(
    payload: VerificationLink, site: Site, base_url: str, sender_name: str | None
) -> EmailContent:
    """Subject, link and texts for ``payload.email_type`` (the payload is complete)."""
    nick = site.nick
    email = (payload.email or "").strip()
    if payload.email_type == "invite_email":
        query = form_encode(
            [
                ("invite_token", payload.invite_token or ""),
                ("email", email),
                ("type", "org" if is_org_invite(payload.invite_type) else "app"),
            ]
        )
        subject = f"{sender_name} invited you to {nick}!" if sender_name else f"Welcome to {nick}!"
        return EmailContent(
            subject, f"{base_url}/register?{query}", f"You've been invited to {nick}", "Join Us"
        )
    if payload.email_type == "forgot_password":
        query = form_encode(
            [("role_id", payload.user_id or ""), ("reset_token", payload.reset_token or "")]
        )
        return EmailContent(
            f"{nick} Password Reset Request",
            f"{base_url}/reset-password?{query}",
            "Click below to reset your password",
            "Reset Password",
        )
    if payload.email_type == "email_verification":
        query = form_encode(
            [
                ("email_id", payload.email_id or ""),
                ("verification_token", payload.verification_token or ""),
            ]
        )
        return EmailContent(
            f"{nick} Email Verification",
            f"{base_url}/verify-email?{query}",
            "Please confirm your email address",
            "Confirm Email",
        )
    raise InvalidJobError("Missing required field: email_type")
