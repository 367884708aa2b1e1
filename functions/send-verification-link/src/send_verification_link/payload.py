"""The ``email:send_verification_link`` payload and its per-type required fields (pure)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EmailType = Literal["invite_email", "forgot_password", "email_verification"]

REQUIRED: dict[str, tuple[tuple[str, ...], str]] = {
    "invite_email": (("invite_token", "sender_id"), "invite_token_or_sender_id"),
    "forgot_password": (("user_id", "reset_token"), "user_id_or_reset_token"),
    "email_verification": (("email_id", "verification_token"), "email_id_or_verification_token"),
}
"""email_type → (fields it needs, the name reported when one is missing), as the reference."""


class VerificationLink(BaseModel):
    """What an ``email:send_verification_link`` job carries.

    ``email_type`` is ``invite_email`` (needs ``invite_token``, ``sender_id``; optional
    ``invite_type``, 2 = organisation), ``forgot_password`` (``user_id``, ``reset_token``) or
    ``email_verification`` (``email_id``, ``verification_token``); ``email`` is the recipient.
    """

    model_config = ConfigDict(extra="allow")

    email_type: str | None = Field(default=None, description="invite_email | forgot_password | …")
    email: str | None = Field(default=None, description="recipient address")
    invite_token: str | None = None
    sender_id: str | None = Field(default=None, description="user id of the inviter (UUID)")
    invite_type: int | str | None = Field(default=None, description="2 = organisation invite")
    user_id: str | None = None
    reset_token: str | None = None
    email_id: str | None = None
    verification_token: str | None = None


def missing_field(payload: VerificationLink) -> str | None:
    """The name the reference reports for the first missing field, or ``None`` when complete."""
    if not payload.email_type:
        return "email_type"
    if not payload.email or not payload.email.strip():
        return "email"
    rule = REQUIRED.get(payload.email_type)
    if rule is None:
        return "email_type"
    fields, name = rule
    if not all(getattr(payload, field) for field in fields):
        return name
    return None


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in any of the usual spellings."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_org_invite(invite_type: int | str | None) -> bool:
    """``Number(invite_type) === 2`` of the reference."""
    if invite_type is None or isinstance(invite_type, bool):
        return False
    try:
        return float(str(invite_type).strip() or "nan") == 2
    except ValueError:
        return False
