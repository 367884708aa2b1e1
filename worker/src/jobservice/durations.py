"""Durations written the way operators type them: ``90s``, ``10m``, ``12h``, ``7d``, ``2w``.

Pure functions, shared by the ``jobs`` command line (``--in``, ``--older-than``) and the
settings (``JOBS_HISTORY_RETENTION``).
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

EXPECTED = "a duration like 90s, 10m, 12h, 7d or 2w"


def parse_duration(text: str) -> timedelta | None:
    """``text`` as a :class:`timedelta`, or ``None`` when it is not a duration."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return timedelta(seconds=float(match.group(1)) * _SECONDS[match.group(2)])


def describe(delta: timedelta) -> str:
    """A short human form of ``delta``: ``3s``, ``4m 10s``, ``2h 5m``, ``3d 4h``."""
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
