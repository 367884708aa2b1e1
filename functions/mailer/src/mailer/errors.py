"""What can go wrong when sending, split by whether another attempt can help."""

from __future__ import annotations


class MailerError(Exception):
    """Base class of every error the mailer raises.

    ``retryable`` says whether sending the same message again later may succeed.
    """

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(MailerError):
    """A setting is missing or malformed; the message names the variable and what it expects."""

    retryable = False


class InvalidMessageError(MailerError):
    """The message cannot be built: a missing field, a line break or control character in a
    header, a value that is not exactly one address, text that is not valid Unicode."""

    retryable = False


class RejectedError(MailerError):
    """The provider refused the message for good (Mailgun 4xx, SMTP 5xx)."""

    retryable = False


class TemporaryError(MailerError):
    """The provider could not be reached or failed on its side (5xx, timeout, SMTP 4xx)."""

    retryable = True
