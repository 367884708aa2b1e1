"""Exceptions a handler raises to say how its job failed."""

from __future__ import annotations


class PermanentError(Exception):
    """Fail the job for good: the worker does not retry it.

    The function replies with a 4xx status (``status``, default 400), the header
    ``X-Job-Retry: false`` and the body ``{"error": message, "retry": false}``. Raise it for
    failures that another attempt cannot fix (a malformed address, a deleted record); any other
    exception is a retryable failure (500).
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        if not 400 <= status <= 499:
            raise ValueError(f"PermanentError status must be a 4xx code (got {status})")
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


class ConfigError(Exception):
    """A setting (environment variable or option) is missing or malformed.

    Its message is one line naming the setting and what it expects.
    """
