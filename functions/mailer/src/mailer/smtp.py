"""Sending through an SMTP server (``smtplib``, with a timeout on every call)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from mailer.config import SmtpSettings
from mailer.errors import ConfigurationError, InvalidMessageError, RejectedError, TemporaryError
from mailer.message import Message


def mime_message(message: Message, sender: str) -> EmailMessage:
    """The MIME message: a text part, an HTML part, or both as alternatives (pure).

    Anything the ``email`` package cannot turn into a message raises
    :class:`InvalidMessageError` (not retryable), naming the reason.
    """
    try:
        mime = _build_mime(message, sender)
        mime.as_bytes()  # serialising is where some bad values surface
    except InvalidMessageError:
        raise
    except Exception as exc:  # the email package raises many kinds on hostile input
        raise InvalidMessageError(
            f"The message cannot be built: {type(exc).__name__}: {exc}"[:500]
        ) from None
    return mime


def _build_mime(message: Message, sender: str) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = sender
    mime["To"] = ", ".join(message.to)
    mime["Subject"] = message.subject
    if message.reply_to is not None:
        mime["Reply-To"] = message.reply_to
    mime["Date"] = formatdate(localtime=False)
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    mime["Message-ID"] = make_msgid(domain=domain)
    if message.text is not None:
        mime.set_content(message.text)
        if message.html is not None:
            mime.add_alternative(message.html, subtype="html")
    elif message.html is not None:
        mime.set_content(message.html, subtype="html")
    return mime


def _smtp_error(exc: smtplib.SMTPResponseException, what: str) -> Exception:
    detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    text = f"SMTP server refused {what} ({exc.smtp_code} {detail})".rstrip()
    if 400 <= exc.smtp_code < 500:
        return TemporaryError(text)
    return RejectedError(text)


def send_smtp(message: Message, settings: SmtpSettings) -> str:
    """Send ``message``; its ``Message-ID``.

    Connection problems, timeouts and 4xx replies raise :class:`TemporaryError`; 5xx replies
    raise :class:`RejectedError`; a refused login raises :class:`ConfigurationError`.
    """
    sender = message.sender or settings.sender
    if sender is None:
        raise ConfigurationError(
            "Missing sender: set SMTP_FROM or give the message a 'from' address"
        )
    mime = mime_message(message, sender)
    where = f"{settings.host}:{settings.port}"
    try:
        client: smtplib.SMTP
        if settings.tls:
            client = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        with client:
            if settings.starttls:
                client.starttls(context=ssl.create_default_context())
            if settings.user is not None:
                client.login(settings.user, settings.password or "")
            client.send_message(mime)
    except smtplib.SMTPAuthenticationError:
        raise ConfigurationError(
            f"SMTP server {where} refused the login of SMTP_USER (check SMTP_USER/SMTP_PASSWORD)"
        ) from None
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()))
        refused = smtplib.SMTPResponseException(code, reply)
        raise _smtp_error(refused, f"the recipient(s) {', '.join(exc.recipients)}") from None
    except smtplib.SMTPSenderRefused as exc:
        raise _smtp_error(exc, f"the sender {sender}") from None
    except smtplib.SMTPDataError as exc:
        raise _smtp_error(exc, "the message") from None
    except smtplib.SMTPResponseException as exc:
        raise _smtp_error(exc, "the connection") from None
    except TimeoutError:
        raise TemporaryError(
            f"SMTP server {where} did not answer within {settings.timeout:g} s"
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise TemporaryError(f"Could not send through SMTP server {where}: {exc}") from None
    return str(mime["Message-ID"])
