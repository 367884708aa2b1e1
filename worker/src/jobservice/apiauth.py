"""Who may use the HTTP API and the dashboard.

- ``JOBS_API_TOKEN`` (or ``JOBS_API_TOKEN_FILE``, a file holding it) set: every request needs
  ``Authorization: Bearer <token>`` or the dashboard's HttpOnly cookie holding it (compared in
  constant time). The token is held to the signing secret's rule: at least 32 bytes and not a
  ``change-me`` placeholder.
- Unset: allowed only while the server listens on loopback (the service refuses to start
  otherwise), and only for requests whose ``Host`` is a loopback name, so a web page cannot
  reach it through DNS rebinding.
- Requests that change something (POST, the dashboard's sign-in and sign-out included) coming
  from a browser must be same-origin: an ``Origin`` header naming another host, or a
  ``Sec-Fetch-Site`` of ``cross-site``/``same-site``, is refused (a page elsewhere cannot act
  for you, even on a loopback service that needs no token).
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from jobfn import security
from jobservice.config import ConfigError, Settings

COOKIE = "jobs_api_token"
MIN_TOKEN = security.MIN_SECRET_BYTES
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """``host`` (an address or name, maybe in brackets) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_settings(settings: Settings) -> None:
    """Refuse a service that would expose the API without a token (:class:`ConfigError`)."""
    token = settings.api_token
    if token is not None:
        try:
            security.check_secret("JOBS_API_TOKEN", token)
        except security.SecretError as exc:
            raise ConfigError(exc.variable, exc.expected + exc.detail) from None
    if (
        settings.callback_server_enabled
        and token is None
        and not is_loopback(settings.callback_bind)
    ):
        raise ConfigError(
            "JOBS_API_TOKEN",
            f"a token of at least {MIN_TOKEN} bytes (or JOBS_API_TOKEN_FILE): the HTTP API and "
            f"dashboard listen on {settings.callback_bind} (JOBS_CALLBACK_BIND), not on loopback",
        )


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of ``given`` with ``token``."""
    if not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header."""
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value if scheme.lower() == "bearer" and value else None


def host_name(host_header: str | None) -> str:
    """The host of a ``Host`` header, without the port."""
    if not host_header:
        return ""
    return urlsplit(f"//{host_header}").hostname or ""


def allowed(
    token: str | None,
    *,
    authorization: str | None,
    cookie: str | None,
    host: str | None,
) -> bool:
    """May a request with these headers read or act?"""
    if token is None:
        return is_loopback(host_name(host))
    return token_matches(bearer(authorization), token) or token_matches(cookie, token)


def same_origin(origin: str | None, host: str | None, fetch_site: str | None = None) -> bool:
    """No ``Origin`` (not a browser) or one naming the request's own ``Host``, and no
    ``Sec-Fetch-Site`` saying the request comes from another site."""
    if fetch_site is not None and fetch_site.strip().lower() in {"cross-site", "same-site"}:
        return False
    if origin is None:
        return True
    parts = urlsplit(origin)
    return bool(host) and parts.netloc.lower() == (host or "").lower()
