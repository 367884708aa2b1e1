"""Where signing secrets come from and where callbacks may go (pure apart from reading files).

Secrets: ``JOBS_SIGNING_SECRET`` (current) and ``JOBS_SIGNING_SECRET_PREVIOUS`` (accepted too,
during a rotation), each either the value itself or, with the ``_FILE`` suffix, a file holding
it (the Docker/Kubernetes secrets convention; surrounding whitespace is dropped). A secret must
be at least :data:`MIN_SECRET_BYTES` bytes and must not be a placeholder (``change-me…``).

Callback allow-list: a function that has no secret cannot tell a worker from anyone else, so it
POSTs callbacks only to URLs allowed by ``JOBS_CALLBACK_ALLOWED_URLS`` (comma-separated origins
such as ``http://jobs-callback:12345`` or URL prefixes such as ``http://host:12345/callback``);
by default the origin of ``INTERNAL_JOBS_CALLBACK_URL`` when that is set, else nowhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jobfn.env import Env
from jobfn.errors import ConfigError

SECRET_VARIABLE = "JOBS_SIGNING_SECRET"
PREVIOUS_SECRET_VARIABLE = "JOBS_SIGNING_SECRET_PREVIOUS"
ALLOWED_URLS_VARIABLE = "JOBS_CALLBACK_ALLOWED_URLS"
CALLBACK_URL_VARIABLE = "INTERNAL_JOBS_CALLBACK_URL"
MIN_SECRET_BYTES = 32
PLACEHOLDER_PREFIX = "change-me"
SECRET_EXPECTED = (
    f"a random secret of at least {MIN_SECRET_BYTES} bytes, not a placeholder "
    "(e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
)


class SecretError(ConfigError):
    """A signing secret variable is unusable; ``variable`` names it, the message is one line."""

    def __init__(self, variable: str, expected: str, detail: str = "") -> None:
        super().__init__(f"{variable}: expected {expected}{detail}")
        self.variable = variable
        self.expected = expected
        self.detail = detail


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The secret in ``name`` or in the file named by ``name_FILE`` (``None`` when neither).

    Raises :class:`SecretError` when both are set, the file cannot be read, or the secret is
    too short or a placeholder. The value is never part of the message.
    """
    reader = Env(env)
    direct = reader.text(name) or ""
    file_name = reader.text(f"{name}_FILE") or ""
    if direct and file_name:
        raise SecretError(name, f"either {name} or {name}_FILE, not both")
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(
                f"{name}_FILE", "a readable file holding the secret", f" ({exc})"
            ) from None
        if not value:
            raise SecretError(f"{name}_FILE", "a file holding the secret", " (the file is empty)")
        check_secret(f"{name}_FILE", value)
        return value
    if not direct:
        return None
    check_secret(name, direct)
    return direct


def check_secret(variable: str, value: str) -> None:
    """Refuse a secret shorter than :data:`MIN_SECRET_BYTES` or a ``change-me`` placeholder."""
    if value.lower().startswith(PLACEHOLDER_PREFIX):
        raise SecretError(variable, SECRET_EXPECTED, " (got the placeholder the manifests ship)")
    size = len(value.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        raise SecretError(variable, SECRET_EXPECTED, f" (got {size} bytes)")


def signing_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """``[current, previous]`` (either may be absent; a previous one needs a current one)."""
    current = read_secret(SECRET_VARIABLE, env)
    previous = read_secret(PREVIOUS_SECRET_VARIABLE, env)
    if previous is not None and current is None:
        raise SecretError(
            SECRET_VARIABLE, f"a current secret when {PREVIOUS_SECRET_VARIABLE} is set"
        )
    return [s for s in (current, previous) if s is not None]


# -- the callback allow-list ------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) URL without user info, else ``None``."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


@dataclass(frozen=True, slots=True)
class _Rule:
    origin: tuple[str, str, int]
    path_prefix: str
    """``""``: the whole origin."""


class CallbackAllowList:
    """Which callback URLs a function without a secret may POST to."""

    __slots__ = ("_rules", "entries")

    def __init__(self, entries: Sequence[str]) -> None:
        rules = []
        for entry in entries:
            origin = _origin(entry)
            if origin is None:
                raise ConfigError(
                    f"{ALLOWED_URLS_VARIABLE}: expected comma-separated http(s) origins or URL "
                    f"prefixes (got {entry!r})"
                )
            path = urlsplit(entry.strip()).path
            rules.append(_Rule(origin, "" if path in ("", "/") else path))
        self._rules = tuple(rules)
        self.entries = tuple(entries)

    def allows(self, url: str) -> bool:
        """Whether a callback may be POSTed to ``url``."""
        origin = _origin(url)
        if origin is None:
            return False
        path = urlsplit(url.strip()).path
        return any(
            rule.origin == origin
            and (
                not rule.path_prefix
                or path == rule.path_prefix
                or path.startswith(rule.path_prefix.rstrip("/") + "/")
            )
            for rule in self._rules
        )

    def __bool__(self) -> bool:
        return bool(self._rules)


def allow_list_key(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The variables :func:`callback_allow_list` reads (to notice when they change)."""
    env = os.environ if env is None else env
    return env.get(ALLOWED_URLS_VARIABLE, ""), env.get(CALLBACK_URL_VARIABLE, "")


def callback_allow_list(env: Mapping[str, str] | None = None) -> CallbackAllowList:
    """``JOBS_CALLBACK_ALLOWED_URLS``, else the origin of ``INTERNAL_JOBS_CALLBACK_URL``, else
    an empty list (no callbacks). Raises :class:`ConfigError` on a malformed entry."""
    env = os.environ if env is None else env
    raw = env.get(ALLOWED_URLS_VARIABLE, "").strip()
    if raw:
        return CallbackAllowList([e.strip() for e in raw.split(",") if e.strip()])
    fallback = env.get(CALLBACK_URL_VARIABLE, "").strip()
    if fallback:
        origin = _origin(fallback)
        if origin is None:
            raise ConfigError(
                f"{CALLBACK_URL_VARIABLE}: expected an http(s) URL (got {fallback!r})"
            )
        scheme, host, port = origin
        return CallbackAllowList([f"{scheme}://{_host(host)}:{port}"])
    return CallbackAllowList([])


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
