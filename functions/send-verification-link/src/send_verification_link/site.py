"""What the email needs from ``GetDatabaseInfo``: host, theme, company, support (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from send_verification_link.errors import InvalidJobError

DEFAULT_BUTTON_COLOUR = "#414141"

_COLOUR = re.compile(
    r"^(?:#(?:[0-9A-Fa-f]{3,4}|[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8})"
    r"|[A-Za-z]{3,30}"
    r"|rgba?\(\s*[0-9.%]+\s*,\s*[0-9.%]+\s*,\s*[0-9.%]+\s*(?:,\s*[0-9.%]+\s*)?\))$"
)
_EMAIL = re.compile(r"^[^@\s<>\"']+@[A-Za-z0-9.-]+$")


@dataclass(frozen=True)
class Site:
    """The site a database's emails speak for."""

    subdomain: str | None
    domain: str
    title: str | None
    company_name: str | None
    company_nick: str | None
    website: str | None
    support_email: str | None
    logo: str | None
    primary_colour: str

    @property
    def nick(self) -> str:
        """The short company name used in subjects (falls back to the name, title, domain)."""
        return self.company_nick or self.company_name or self.title or self.domain


def _first(container: Any, key: str) -> Any:
    if not isinstance(container, dict):
        return None
    nodes = (
        (container.get(key) or {}).get("nodes") if isinstance(container.get(key), dict) else None
    )
    if isinstance(nodes, list) and nodes:
        return nodes[0]
    return None


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def http_url(value: Any) -> str | None:
    """``value`` when it is an absolute http(s) URL, else ``None``."""
    text = _text(value)
    if text is None:
        return None
    parts = urlsplit(text)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or any(c in text for c in "\r\n")
    ):
        return None
    return text


def colour(value: Any) -> str:
    """A CSS colour safe for a ``style`` attribute; the default when ``value`` is not one."""
    text = _text(value)
    return text if text is not None and _COLOUR.match(text) else DEFAULT_BUTTON_COLOUR


def _json_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def site_from(data: dict[str, Any]) -> Site:
    """The :class:`Site` of a ``GetDatabaseInfo`` result.

    No site → :class:`InvalidJobError` ``Site not found for database``; a site without a domain,
    theme or legal-terms module → ``Missing site configuration for email: …`` naming them.
    """
    database = _first(data, "databases")
    site = _first(database, "sites")
    if not isinstance(site, dict):
        raise InvalidJobError("Site not found for database")
    domain_node = _first(site, "domains")
    theme_node = _first(site, "siteThemes")
    legal_node = _first(site, "siteModules")
    domain = _text(domain_node.get("domain")) if isinstance(domain_node, dict) else None
    missing = [
        name
        for name, present in (
            ("a domain (site.domains)", domain is not None),
            ("a theme (site.siteThemes)", isinstance(theme_node, dict)),
            ("the legal_terms_module (site.siteModules)", isinstance(legal_node, dict)),
        )
        if not present
    ]
    if missing or domain is None:
        raise InvalidJobError("Missing site configuration for email: no " + ", no ".join(missing))
    assert isinstance(domain_node, dict)
    assert isinstance(theme_node, dict)
    assert isinstance(legal_node, dict)
    legal = _json_object(legal_node.get("data"))
    company = _json_object(legal.get("company"))
    support = _text(_json_object(legal.get("emails")).get("support"))
    return Site(
        subdomain=_text(domain_node.get("subdomain")),
        domain=domain,
        title=_text(site.get("title")),
        company_name=_text(company.get("name")),
        company_nick=_text(company.get("nick")),
        website=http_url(company.get("website")),
        support_email=support if support is not None and _EMAIL.match(support) else None,
        logo=http_url(_json_object(site.get("logo")).get("url")),
        primary_colour=colour(_json_object(theme_node.get("theme")).get("primary")),
    )
