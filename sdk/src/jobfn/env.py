"""Reading environment variables: the one typed reader of the SDK, the job service and the
functions (pure: it reads a mapping you pass, ``os.environ`` by default).

.. code-block:: python

    from jobfn.env import Env

    env = Env()                                   # or Env({"PORT": "8080"}) in a test
    port = env.integer("PORT", 8080, minimum=1, maximum=65535)
    dry_run = env.flag("MY_FUNCTION_DRY_RUN", False)

A value is stripped of surrounding blanks, and an empty value counts as unset (the default
applies). A malformed or missing value raises :class:`EnvError` (or the subclass given as
``error``) whose message is one line naming the variable and what it expects:
``PORT: expected an integer from 1 to 65535 (got 'eighty')``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from jobfn.errors import ConfigError

TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off"})
BOOL_EXPECTED = "a boolean (true/false, 1/0, yes/no, on/off)"


class EnvError(ConfigError, ValueError):
    """A variable is missing or malformed; ``str(error)`` is one line naming it.

    A :class:`jobfn.ConfigError` (``jobfn serve`` prints it and exits 2) and a ``ValueError``.

    ``variable`` is the variable's name, ``expected`` what it should hold, ``value`` the value
    found (``None`` when it is not set).
    """

    def __init__(self, variable: str, expected: str, value: str | None = None) -> None:
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{variable}: expected {expected}{shown}")
        self.variable = variable
        self.expected = expected
        self.value = value


def parse_bool(name: str, raw: str, *, error: type[EnvError] = EnvError) -> bool:
    """``true/false, 1/0, yes/no, on/off`` (any case, blanks ignored) → bool, else ``error``."""
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise error(name, BOOL_EXPECTED, raw)


class Env:
    """Typed getters over one environment mapping, naming the variable on every error."""

    __slots__ = ("environ", "error")

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, error: type[EnvError] = EnvError
    ) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.error = error

    def text(self, name: str, default: str | None = None) -> str | None:
        """The value without surrounding blanks; ``default`` when unset or empty."""
        value = self.environ.get(name, "").strip()
        return value or default

    def required(self, name: str, expected: str) -> str:
        """The value; ``error`` saying what is expected when unset or empty."""
        value = self.text(name)
        if value is None:
            raise self.error(name, f"{expected} (not set)")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean: ``true/1/yes/on`` or ``false/0/no/off`` (any case)."""
        raw = self.text(name)
        return default if raw is None else parse_bool(name, raw, error=self.error)

    def integer(self, name: str, default: int, *, minimum: int = 1, maximum: int = 2**31) -> int:
        """An integer from ``minimum`` to ``maximum``."""
        raw = self.text(name)
        if raw is None:
            return default
        expected = f"an integer from {minimum} to {maximum}"
        try:
            value = int(raw)
        except ValueError:
            raise self.error(name, expected, raw) from None
        if not minimum <= value <= maximum:
            raise self.error(name, expected, raw)
        return value

    def seconds(
        self, name: str, default: float, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        """A finite number of seconds ≥ ``minimum`` (and ≤ ``maximum`` when given)."""
        raw = self.text(name)
        if raw is None:
            return default
        expected = f"a number of seconds ≥ {minimum:g}"
        if maximum is not None:
            expected = f"a number of seconds from {minimum:g} to {maximum:g}"
        try:
            value = float(raw)
        except ValueError:
            raise self.error(name, expected, raw) from None
        if not value >= minimum or value == float("inf"):
            raise self.error(name, expected, raw)
        if maximum is not None and value > maximum:
            raise self.error(name, expected, raw)
        return value

    def http_url(self, name: str, default: str | None = None) -> str | None:
        """An ``http://`` or ``https://`` URL with a host, trailing ``/`` removed."""
        raw = self.text(name)
        if raw is None:
            return default
        parts = urlsplit(raw)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise self.error(name, "an http(s) URL with a host", raw)
        return raw.rstrip("/")

    def json_object(self, name: str, expected: str) -> dict[str, object]:
        """A JSON object (``{}`` when unset); ``expected`` describes it in the error."""
        raw = self.text(name)
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            raise self.error(name, expected, raw) from None
        if not isinstance(value, dict):
            raise self.error(name, expected, raw)
        return value
