"""Reading environment variables with one clear line per problem (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from mailer.errors import ConfigurationError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value with surrounding blanks removed; ``None`` when unset or empty."""
    value = environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def required(environ: Mapping[str, str], name: str, expects: str) -> str:
    """The variable's value, or :class:`ConfigurationError` naming it when it is missing."""
    value = text(environ, name)
    if value is None:
        raise ConfigurationError(f"Missing environment variable {name} ({expects})")
    return value


def flag(environ: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    """A boolean variable: ``true/1/yes/on`` or ``false/0/no/off`` (any case)."""
    value = environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(
        f"Environment variable {name} must be true or false (got {value.strip()!r})"
    )


def integer(
    environ: Mapping[str, str], name: str, *, default: int, minimum: int = 0, maximum: int = 65535
) -> int:
    """An integer variable within ``[minimum, maximum]``; ``default`` when unset."""
    value = text(environ, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if not minimum <= number <= maximum:
        raise ConfigurationError(
            f"Environment variable {name} must be a whole number from {minimum} to {maximum}"
            f" (got {value!r})"
        )
    return number


def seconds(environ: Mapping[str, str], name: str, *, default: float) -> float:
    """A positive duration in seconds; ``default`` when unset."""
    value = text(environ, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number <= 3600:
        raise ConfigurationError(
            f"Environment variable {name} must be a number of seconds above 0 (got {value!r})"
        )
    return number


def http_url(environ: Mapping[str, str], name: str, *, default: str | None = None) -> str | None:
    """An ``http://`` or ``https://`` URL with a host; ``default`` when unset."""
    value = text(environ, name)
    if value is None:
        return default
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigurationError(
            f"Environment variable {name} must be an http(s) URL (got {value!r})"
        )
    return value.rstrip("/")
