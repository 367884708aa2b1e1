"""The simple-email payload and its checks (pure)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mailer import InvalidMessageError, Message


class SimpleEmail(BaseModel):
    """What a ``simple-email`` job carries.

    ``to`` and ``subject`` are required and at least one of ``html`` and ``text``; ``from`` and
    ``replyTo`` are optional (``from`` defaults to ``MAILGUN_FROM`` or ``SMTP_FROM``). The
    fields are optional here so that a missing one is reported with the reference's message
    (``Missing required field 'to'``) rather than a generic validation error.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    to: str | list[str] | None = Field(default=None, description="recipient address(es)")
    subject: str | None = Field(default=None, description="subject line")
    html: str | None = Field(default=None, description="HTML body")
    text: str | None = Field(default=None, description="plain-text body")
    sender: str | None = Field(default=None, alias="from", description="sender address")
    reply_to: str | None = Field(default=None, alias="replyTo", description="Reply-To address")


def _present(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def to_message(payload: SimpleEmail, default_sender: str | None = None) -> Message:
    """The email to send; :class:`mailer.InvalidMessageError` names the first bad field.

    Checks, in the reference's order: ``to``, ``subject``, then ``html``/``text``.
    """
    recipients = [payload.to] if isinstance(payload.to, str) else list(payload.to or [])
    recipients = [item for item in recipients if item.strip()]
    if not recipients:
        raise InvalidMessageError("Missing required field 'to'")
    subject = _present(payload.subject)
    if subject is None:
        raise InvalidMessageError("Missing required field 'subject'")
    html, text = _present(payload.html), _present(payload.text)
    if html is None and text is None:
        raise InvalidMessageError("Either 'html' or 'text' must be provided")
    return Message.build(
        to=[item.strip() for item in recipients],
        subject=subject.strip(),
        html=html,
        text=text,
        sender=_present(payload.sender) or default_sender,
        reply_to=_present(payload.reply_to),
    )
