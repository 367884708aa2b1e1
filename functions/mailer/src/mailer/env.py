"""Reading the mailer's environment variables through :class:`jobfn.env.Env` (pure).

Thin functions over the one environment reader of the project, so every problem is one line
naming the variable and what it expects (``SMTP_PORT: expected an integer from 1 to 65535
(got 'x')``), raised as :class:`~mailer.errors.ConfigurationError`.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobfn.env import Env, EnvError
from mailer.errors import ConfigurationError


class MailerEnvError(EnvError, ConfigurationError):
    """A malformed or missing mailer variable (both an :class:`EnvError` and a
    :class:`ConfigurationError`)."""

    def __init__(self, variable: str, expected: str, value: str | None = None) -> None:
        EnvError.__init__(self, variable, expected, value)
        self.message = EnvError.__str__(self)

    def __str__(self) -> str:
        return self.message


def reader(environ: Mapping[str, str]) -> Env:
    """An :class:`Env` over ``environ`` raising :class:`MailerEnvError`."""
    return Env(environ, error=MailerEnvError)


def invalid(name: str, expected: str, value: str | None = None) -> ConfigurationError:
    """The error for variable ``name`` holding ``value`` when ``expected`` was wanted."""
    return MailerEnvError(name, expected, value)


def text(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value with surrounding blanks removed; ``None`` when unset or empty."""
    return reader(environ).text(name)


def required(environ: Mapping[str, str], name: str, expects: str) -> str:
    """The variable's value, or :class:`ConfigurationError` naming it when it is missing."""
    return reader(environ).required(name, expects)


def flag(environ: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    """A boolean variable: ``true/1/yes/on`` or ``false/0/no/off`` (any case)."""
    return reader(environ).flag(name, default)


def integer(
    environ: Mapping[str, str], name: str, *, default: int, minimum: int = 0, maximum: int = 65535
) -> int:
    """An integer variable within ``[minimum, maximum]``; ``default`` when unset."""
    return reader(environ).integer(name, default, minimum=minimum, maximum=maximum)


def seconds(environ: Mapping[str, str], name: str, *, default: float) -> float:
    """A positive duration in seconds (at most an hour); ``default`` when unset."""
    return reader(environ).seconds(name, default, minimum=0.001, maximum=3600)


def http_url(environ: Mapping[str, str], name: str, *, default: str | None = None) -> str | None:
    """An ``http://`` or ``https://`` URL with a host; ``default`` when unset."""
    return reader(environ).http_url(name, default)
