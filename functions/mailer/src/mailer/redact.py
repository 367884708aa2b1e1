"""Masking secrets before they reach a log line (pure).

A verification or invite link carries a token that is as good as a password until it is used;
a dry run that logs the link would leak it to whoever reads the logs. :func:`mask_link` keeps
the link's shape (scheme, host, path, parameter names) and replaces the value of every query or
fragment parameter whose name looks like a secret; :func:`mask_links` does it for every link in
a text.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
"""What a secret value is replaced with."""

_SECRET_NAME = re.compile(r"token|secret|passw|key|code|sig|auth|otp|hash|nonce", re.IGNORECASE)
_LINK = re.compile(r"https?://[^\s\"'<>]*[^\s\"'<>.,;:!?)]", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a parameter called ``name`` probably carries a secret (``invite_token``, …)."""
    return _SECRET_NAME.search(name) is not None


def _mask_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return MASK
    return urlencode(
        [(name, MASK if is_secret_name(name) else value) for name, value in pairs], safe="*"
    )


def mask_link(link: str) -> str:
    """``link`` with the values of secret-looking query and fragment parameters masked.

    ``https://app.test/verify?email_id=e1&verification_token=t1`` →
    ``https://app.test/verify?email_id=e1&verification_token=***``. User info in the authority
    (``https://user:pass@host/``) is masked too. Something that is not a URL comes back whole.
    """
    try:
        parts = urlsplit(link)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return link
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    return urlunsplit(
        (parts.scheme, netloc, parts.path, _mask_query(parts.query), _mask_query(parts.fragment))
    )


def mask_links(text: str) -> str:
    """``text`` with :func:`mask_link` applied to every ``http(s)://`` link in it."""
    return _LINK.sub(lambda match: mask_link(match.group()), text)
