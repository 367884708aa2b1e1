"""Operator input → values: payloads, ``--param key=value``, ids, times, schedules.

Pure functions shared by the ``jobs`` command line and the HTTP API. Each raises
:class:`InputError` whose message is one line naming the argument and what was expected.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from jobservice.durations import EXPECTED as DURATION_EXPECTED
from jobservice.durations import parse_duration

STATUSES = ("queued", "scheduled", "running", "retrying", "completed", "failed", "cancelled")
"""Every status a job can have (see docs/operations.md)."""
FINISHED = frozenset({"completed", "failed", "cancelled"})

_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")
_KEY = re.compile(r"^[^.=\s][^=]*$")


class InputError(ValueError):
    """Malformed operator input; ``str(error)`` is one line naming the argument."""


def parse_json_object(name: str, text: str) -> dict[str, Any]:
    """``text`` as a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: expected JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise InputError(f"{name}: expected a JSON object, got {type(value).__name__}")
    return value


def parse_payload(text: str | None, stdin: TextIO | None = None) -> dict[str, Any]:
    """The ``--payload`` (``None`` → ``{}``; ``-`` reads ``stdin``) as a JSON object."""
    if text is None:
        return {}
    if text == "-":
        if stdin is None:
            raise InputError("--payload: '-' reads standard input, which is not available")
        text = stdin.read()
    return parse_json_object("--payload", text)


def scalar(text: str) -> Any:
    """A ``--param`` value: integers, decimals, ``true``/``false``/``null``, else the text."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _NUMBER.match(text):
        whole = "." not in text and "e" not in text.lower()
        return int(text) if whole else float(text)
    return text


def apply_params(payload: Mapping[str, Any], params: Iterable[str]) -> dict[str, Any]:
    """``payload`` with each ``key=value`` set in it; dotted keys (``a.b=1``) nest."""
    out: dict[str, Any] = json.loads(json.dumps(payload))
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep or not _KEY.match(key) or any(not part for part in key.split(".")):
            raise InputError(f"--param: expected key=value with a non-empty key (got {item!r})")
        parts = key.split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise InputError(f"--param: {where} is already a value, cannot set {key}")
            node = child
        node[parts[-1]] = scalar(raw)
    return out


def parse_uuid(name: str, text: str | None) -> str | None:
    """A UUID argument, or ``None``."""
    if text is None or not text.strip():
        return None
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise InputError(f"{name}: expected a UUID (got {text!r})") from None


def parse_time(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 date-time with a zone, or ``None``."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{name}: expected an ISO 8601 date-time (got {text!r})") from None
    if moment.tzinfo is None:
        raise InputError(f"{name}: expected a time zone, e.g. {text}Z or {text}+02:00")
    return moment


def parse_interval(name: str, text: str) -> str:
    """``7d`` / ``12h`` / ``30m`` / ``90s`` / ``2w`` → a PostgreSQL interval literal."""
    delta = parse_duration(text)
    if delta is None:
        raise InputError(f"{name}: expected {DURATION_EXPECTED} (got {text!r})")
    return f"{delta.total_seconds():g} seconds"


def run_at(at: str | None, after: str | None, *, now: datetime | None = None) -> datetime | None:
    """The run time of ``--run-at`` or ``--in`` (at most one), or ``None`` for now."""
    if at is not None and after is not None:
        raise InputError("--in: give either --run-at or --in, not both")
    if after is not None:
        delta = parse_duration(after)
        if delta is None:
            raise InputError(f"--in: expected {DURATION_EXPECTED} (got {after!r})")
        return (now or datetime.now(UTC)) + delta
    return parse_time("--run-at", at)


def parse_statuses(values: Sequence[str] | None) -> list[str] | None:
    """Status filters (comma-separated or repeated), each one of :data:`STATUSES`."""
    if not values:
        return None
    out = [s.strip() for value in values for s in value.split(",") if s.strip()]
    for status in out:
        if status not in STATUSES:
            raise InputError(f"--status: expected one of {', '.join(STATUSES)} (got {status!r})")
    return out or None


def schedule_info(
    *, cron: str | None, at: str | None, spec: str | None, tz: str | None, default_tz: str
) -> dict[str, Any] | str:
    """The ``schedule_info`` of ``--cron`` / ``--at`` / ``--schedule`` (exactly one), checked."""
    from jobservice.cron import ScheduleError, first_fire, parse

    given = [(n, v) for n, v in (("--cron", cron), ("--at", at), ("--schedule", spec)) if v]
    if len(given) != 1:
        raise InputError("--cron: give exactly one of --cron, --at or --schedule")
    name, value = given[0]
    info: dict[str, Any] | str
    if name == "--cron":
        info = {"rule": value}
    elif name == "--at":
        moment = parse_time("--at", value)
        assert moment is not None
        info = moment.isoformat()
    else:
        try:
            info = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputError(f"--schedule: expected JSON ({exc.msg})") from None
    if tz is not None:
        if not isinstance(info, dict):
            raise InputError("--tz: only applies to --cron or a --schedule object")
        info["tz"] = tz
    try:
        first_fire(parse(info, default_tz=default_tz), datetime.now(UTC))
    except ScheduleError as exc:
        raise InputError(f"{name}: {exc}") from None
    return info
