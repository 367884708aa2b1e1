"""``schedule_info`` → the next time a schedule fires (pure: no I/O, no wall clock).

The forms are node-schedule 2.1.1's (what the original Node job service accepted):

1. ``{"rule": "<cron>", "start": <date>, "end": <date>, "tz": "<IANA>"}`` — a 5-field cron
   expression, or 6 fields with leading seconds; ``start``/``end`` bound it; ``tz`` its zone.
2. A recurrence object without ``rule``: ``year``, ``month`` (0-based), ``date``,
   ``dayOfWeek`` (0 = Sunday), ``hour``, ``minute``, ``second`` — each a number, a list, or a
   range object ``{"start", "end", "step"}``; a missing ``second`` means 0, any other missing
   unit means "any"; ``tz`` honoured; ``start``/``end`` ignored (as in node-schedule).
3. A one-off date: an ISO 8601 string or epoch milliseconds.
4. A cron string as the whole value.

Time-zone policy (a schedule is a set of local wall-clock times in its zone):

- local times skipped by a DST change (spring forward) do not fire;
- local times repeated by a DST change (fall back) fire once, at their first occurrence —
  unless the schedule fires every hour (its hour field is unrestricted), in which case the
  repeated hour is a real new hour and fires as such.

:func:`parse` validates a value (:class:`ScheduleError` names the field and the problem),
:meth:`Schedule.next_after` gives the next fire strictly after a moment (``None`` = never
again) and :func:`first_fire` the first fire of a newly planned schedule.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "OneOff",
    "Recurring",
    "Schedule",
    "ScheduleError",
    "TimeSet",
    "finished_reason",
    "first_fire",
    "parse",
    "parse_cron",
    "zone",
]

MAX_YEAR = 9999
SEARCH_YEARS = 400
"""The Gregorian calendar repeats every 400 years: a rule silent that long never fires."""

_SECOND = timedelta(seconds=1)


class ScheduleError(ValueError):
    """A ``schedule_info`` value that cannot be scheduled; the message says why."""


def zone(name: str, where: str = "tz") -> tzinfo:
    """The IANA time zone ``name``; :class:`ScheduleError` naming ``where`` if unknown."""
    if not isinstance(name, str) or not name:
        raise ScheduleError(f"{where}: expected an IANA time zone name, got {_show(name)}")
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f'{where}: unknown time zone "{name}"') from None


def _show(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


# -- the set of matching wall-clock times --------------------------------------------------


@dataclass(frozen=True)
class TimeSet:
    """Wall-clock times matching a rule: sorted allowed values per unit.

    ``months`` are 1-12, ``weekdays`` 0-6 with 0 = Sunday, ``years`` None for any.
    ``day_rule`` says how day-of-month and day-of-week combine: ``"or"`` (cron: when both are
    restricted a day matching either fires) or ``"and"`` (node-schedule recurrence objects).
    """

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    years: tuple[int, ...] | None = None
    days_restricted: bool = False
    weekdays_restricted: bool = False
    day_rule: str = "or"

    @property
    def every_hour(self) -> bool:
        """True when every hour of the day can fire (the hour field is unrestricted)."""
        return len(self.hours) == 24

    def day_matches(self, day: date) -> bool:
        """Whether ``day`` is a day on which the rule fires."""
        if day.month not in self.months:
            return False
        if self.years is not None and day.year not in self.years:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.day_rule == "or" and self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def _next_time(self, hour: int, minute: int, second: int) -> time | None:
        """The first matching time of day at or after hour:minute:second."""
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        for hr in hours[bisect.bisect_left(hours, hour) :]:
            if hr > hour:
                return time(hr, minutes[0], seconds[0])
            for mi in minutes[bisect.bisect_left(minutes, minute) :]:
                if mi > minute:
                    return time(hr, mi, seconds[0])
                k = bisect.bisect_left(seconds, second)
                if k < len(seconds):
                    return time(hr, mi, seconds[k])
        return None

    def _next_day(self, day: date, last_year: int) -> date | None:
        """The first matching day at or after ``day`` (None past ``last_year``)."""
        while day.year <= last_year:
            if self.years is not None and day.year not in self.years:
                later = [y for y in self.years if y > day.year]
                if not later or later[0] > last_year:
                    return None
                day = date(later[0], 1, 1)
                continue
            if day.month not in self.months:
                if day.month == 12:
                    if day.year >= MAX_YEAR:
                        return None
                    day = date(day.year + 1, 1, 1)
                else:
                    day = date(day.year, day.month + 1, 1)
                continue
            if self.day_matches(day):
                return day
            if day == date.max:
                return None
            day += timedelta(days=1)
        return None

    def next_wall(self, wall: datetime) -> datetime | None:
        """The first matching naive wall-clock time at or after ``wall`` (whole seconds)."""
        if wall.microsecond:
            wall = wall.replace(microsecond=0) + _SECOND
        last_year = min(MAX_YEAR, wall.year + SEARCH_YEARS)
        day: date | None = wall.date()
        at = wall.time()
        while day is not None:
            day = self._next_day(day, last_year)
            if day is None:
                return None
            if day != wall.date():
                at = time(0, 0, 0)
            found = self._next_time(at.hour, at.minute, at.second)
            if found is not None:
                return datetime.combine(day, found)
            if day == date.max:
                return None
            day += timedelta(days=1)
        return None


# -- schedules ------------------------------------------------------------------------------


class Schedule:
    """A parsed ``schedule_info``: when does it fire next?"""

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire strictly after ``moment`` (aware), in UTC; None if it never fires."""
        raise NotImplementedError


def _ceil_second(moment: datetime) -> datetime:
    """The first whole second strictly after ``moment``."""
    return moment.replace(microsecond=0) + _SECOND


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class OneOff(Schedule):
    """Fires once, at ``at``."""

    at: datetime

    def next_after(self, moment: datetime) -> datetime | None:
        moment = _require_aware(moment)
        return self.at if self.at > moment else None


@dataclass(frozen=True)
class Recurring(Schedule):
    """Fires at the wall-clock times of ``times`` in zone ``tz``, within [start, end]."""

    times: TimeSet
    tz: tzinfo
    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, moment: datetime) -> datetime | None:
        at = _ceil_second(_require_aware(moment))
        if self.start is not None and self.start > at:
            at = self.start if self.start.microsecond == 0 else _ceil_second(self.start)
        while at.year <= MAX_YEAR:
            if self.end is not None and at > self.end:
                return None
            local = at.astimezone(self.tz)
            offset = local.utcoffset()
            assert offset is not None
            wall = self.times.next_wall(local.replace(tzinfo=None))
            if wall is None:
                return None
            try:
                candidate = (wall - offset).replace(tzinfo=UTC)
            except OverflowError:
                return None
            change = self._offset_change(at, candidate, offset)
            if change is not None:
                # The zone's offset changes before the candidate: continue from the change,
                # with the new offset (a skipped local hour is thereby not fired).
                at = change
                continue
            if self.end is not None and candidate > self.end:
                return None
            if candidate.astimezone(self.tz).fold == 1 and not self.times.every_hour:
                # A repeated local time (fall back): it fired at its first occurrence.
                at = candidate + _SECOND
                continue
            return candidate
        return None

    def _offset_change(
        self, begin: datetime, until: datetime, offset: timedelta
    ) -> datetime | None:
        """The first instant in (begin, until] whose UTC offset is not ``offset``."""
        if self.tz is UTC:
            return None
        step = timedelta(days=1)
        low = begin
        while low < until:
            high = min(low + step, until)
            if high.astimezone(self.tz).utcoffset() != offset:
                while high - low > _SECOND:
                    mid = low + (high - low) / 2
                    mid = mid.replace(microsecond=0)
                    if mid <= low:
                        mid = low + _SECOND
                    if mid.astimezone(self.tz).utcoffset() != offset:
                        high = mid
                    else:
                        low = mid
                return high
            low = high
        return None


def first_fire(schedule: Schedule, now: datetime) -> datetime:
    """The first fire after ``now`` of a schedule being planned; ScheduleError if none."""
    nxt = schedule.next_after(now)
    if nxt is not None:
        return nxt
    if isinstance(schedule, OneOff):
        raise ScheduleError(f"date {schedule.at.isoformat()} is in the past")
    if isinstance(schedule, Recurring) and schedule.end is not None:
        if schedule.end <= now:
            raise ScheduleError(f"end is in the past ({schedule.end.isoformat()})")
        raise ScheduleError(f"never fires before end ({schedule.end.isoformat()})")
    raise ScheduleError(f"never fires after {now.astimezone(UTC).isoformat()}")


def finished_reason(schedule: Schedule, now: datetime) -> str:
    """Why a schedule that just fired has no fire after ``now`` (for ``schedule_error``)."""
    if isinstance(schedule, OneOff):
        return f"finished: the one-off date {schedule.at.isoformat()} has passed"
    if isinstance(schedule, Recurring) and schedule.end is not None:
        return f"finished: end {schedule.end.isoformat()} has passed"
    return f"finished: no fire after {now.astimezone(UTC).isoformat()}"


# -- cron expressions --------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    name: str
    low: int
    high: int
    names: Mapping[str, int] | None = None


_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAY_NAMES = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

_SECONDS = _Unit("second", 0, 59)
_MINUTES = _Unit("minute", 0, 59)
_HOURS = _Unit("hour", 0, 23)
_DOM = _Unit("day-of-month", 1, 31)
_MONTHS = _Unit("month", 1, 12, _MONTH_NAMES)
_DOW = _Unit("day-of-week", 0, 7, _DAY_NAMES)
_CRON_UNITS = (_SECONDS, _MINUTES, _HOURS, _DOM, _MONTHS, _DOW)

_INT = re.compile(r"^\d+$")


def _cron_value(text: str, unit: _Unit, where: str) -> int:
    if _INT.match(text):
        value = int(text)
    elif unit.names is not None and text.upper() in unit.names:
        value = unit.names[text.upper()]
    else:
        expected = "a number" + (" or a name" if unit.names else "")
        raise ScheduleError(f'{where}: {unit.name} field "{text}" is not {expected}')
    if not unit.low <= value <= unit.high:
        raise ScheduleError(
            f'{where}: {unit.name} field "{text}" is out of range {unit.low}-{unit.high}'
        )
    return value


def _cron_field(text: str, unit: _Unit, where: str) -> set[int]:
    if not text:
        raise ScheduleError(f"{where}: {unit.name} field is empty")
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f'{where}: {unit.name} field "{text}" has an empty list item')
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _INT.match(step_text) or int(step_text) == 0:
                raise ScheduleError(
                    f'{where}: {unit.name} field "{item}" needs a positive whole step'
                )
            step = int(step_text)
        if base in ("*", "?"):
            if base == "?" and unit not in (_DOM, _DOW):
                raise ScheduleError(
                    f'{where}: {unit.name} field "{item}": "?" is only allowed in the day fields'
                )
            first, last = unit.low, unit.high
        elif "-" in base:
            low_text, _, high_text = base.partition("-")
            first = _cron_value(low_text, unit, where)
            last = _cron_value(high_text, unit, where)
            if first > last:
                raise ScheduleError(
                    f'{where}: {unit.name} field "{item}" is a reversed range ({first} > {last})'
                )
        else:
            first = _cron_value(base, unit, where)
            last = unit.high if slash else first
        values.update(range(first, last + 1, step))
    if unit is _DOW and 7 in values:
        values.discard(7)
        values.add(0)
    return values


def _feasible_days(days: Iterable[int], months: Iterable[int]) -> bool:
    """Whether some day of ``days`` exists in some month of ``months`` (in some year)."""
    longest = max(calendar.monthrange(2000, m)[1] for m in months)
    return min(days) <= longest


def parse_cron(expression: str, where: str = "rule") -> TimeSet:
    """The :class:`TimeSet` of a 5-field or 6-field (leading seconds) cron expression."""
    if not isinstance(expression, str):
        raise ScheduleError(f"{where}: expected a cron expression string, got {_show(expression)}")
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ScheduleError(
            f'{where}: expected 5 or 6 fields (6 with leading seconds), got {len(fields)} in "'
            f'{expression}"'
        )
    sec, minute, hour, dom, month, dow = (
        _cron_field(text, unit, where) for text, unit in zip(fields, _CRON_UNITS, strict=True)
    )
    days_restricted = dom != set(range(1, 32))
    weekdays_restricted = dow != set(range(7))
    if days_restricted and not weekdays_restricted and not _feasible_days(dom, month):
        raise ScheduleError(
            f'{where}: day-of-month "{fields[3]}" never occurs in month "{fields[4]}"'
        )
    return TimeSet(
        seconds=tuple(sorted(sec)),
        minutes=tuple(sorted(minute)),
        hours=tuple(sorted(hour)),
        days=frozenset(dom),
        months=frozenset(month),
        weekdays=frozenset(dow),
        days_restricted=days_restricted,
        weekdays_restricted=weekdays_restricted,
        day_rule="or",
    )


# -- recurrence objects --------------------------------------------------------------------

# key: (low, high, shift) — shift turns the JSON value into ours (months are 0-based there).
_RECURRENCE_UNITS: dict[str, tuple[int, int, int]] = {
    "year": (1, MAX_YEAR, 0),
    "month": (0, 11, 1),
    "date": (1, 31, 0),
    "dayOfWeek": (0, 6, 0),
    "hour": (0, 23, 0),
    "minute": (0, 59, 0),
    "second": (0, 59, 0),
}
_RANGE_KEYS = frozenset({"start", "end", "step"})


def _whole(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise ScheduleError(f"{where}: expected a whole number, got {_show(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ScheduleError(f"{where}: expected a whole number, got {_show(value)}")


def _recurrence_values(value: object, key: str, out: set[int]) -> None:
    low, high, shift = _RECURRENCE_UNITS[key]
    if isinstance(value, list):
        for item in value:
            _recurrence_values(item, key, out)
        return
    if isinstance(value, dict):
        unknown = sorted(set(value) - _RANGE_KEYS)
        if unknown:
            raise ScheduleError(
                f'{key}: unknown range key "{unknown[0]}" (expected start, end, step)'
            )
        start = low if value.get("start") is None else _whole(value["start"], f"{key}.start")
        end = high if value.get("end") is None else _whole(value["end"], f"{key}.end")
        step = 1 if value.get("step") is None else _whole(value["step"], f"{key}.step")
        for name, bound in (("start", start), ("end", end)):
            if not low <= bound <= high:
                raise ScheduleError(f"{key}.{name}: {bound} is out of range {low}-{high}")
        if start > end:
            raise ScheduleError(f"{key}: range start {start} is after its end {end}")
        if step < 1:
            raise ScheduleError(f"{key}.step: expected a positive whole number, got {step}")
        out.update(v + shift for v in range(start, end + 1, step))
        return
    number = _whole(value, key)
    if not low <= number <= high:
        raise ScheduleError(f"{key}: {number} is out of range {low}-{high}")
    out.add(number + shift)


def _recurrence(spec: Mapping[str, object], tz: tzinfo) -> Recurring:
    allowed: dict[str, set[int]] = {}
    for key, (low, high, shift) in _RECURRENCE_UNITS.items():
        if key == "year" and spec.get(key) is None:
            continue
        if key not in spec or spec[key] is None:
            if key == "second" and key not in spec:
                allowed[key] = {0}
            else:
                allowed[key] = set(range(low + shift, high + shift + 1))
            continue
        values: set[int] = set()
        _recurrence_values(spec[key], key, values)
        if not values:
            raise ScheduleError(f"{key}: an empty list never matches")
        allowed[key] = values
    months, days = allowed["month"], allowed["date"]
    if not _feasible_days(days, months):
        raise ScheduleError(
            f"date: {sorted(days)} never occurs in month {sorted(m - 1 for m in months)}"
            " (months are 0-based)"
        )
    years = None if spec.get("year") is None else tuple(sorted(allowed["year"]))
    times = TimeSet(
        seconds=tuple(sorted(allowed["second"])),
        minutes=tuple(sorted(allowed["minute"])),
        hours=tuple(sorted(allowed["hour"])),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(allowed["dayOfWeek"]),
        years=years,
        days_restricted=True,
        weekdays_restricted=True,
        day_rule="and",
    )
    return Recurring(times, tz)


# -- dates ----------------------------------------------------------------------------------


def _date(value: object, where: str, tz: tzinfo) -> datetime:
    """An instant from an ISO 8601 / RFC 2822 string or epoch milliseconds (naive → ``tz``)."""
    if isinstance(value, bool) or value is None:
        raise ScheduleError(f"{where}: expected a date, got {_show(value)}")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            raise ScheduleError(f"{where}: {value} is not a valid epoch in milliseconds") from None
    if not isinstance(value, str):
        raise ScheduleError(f"{where}: expected a date, got {_show(value)}")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise ScheduleError(f'{where}: "{value}" is not a date') from None
    if moment.tzinfo is None:
        moment = _localize(moment, tz)
    return moment.astimezone(UTC)


def _localize(wall: datetime, tz: tzinfo) -> datetime:
    """A naive wall time in ``tz`` as an instant (first occurrence; a skipped one moves on)."""
    moment = wall.replace(tzinfo=tz, fold=0)
    back = moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    if back != wall:  # in a gap: the wall time does not exist; use the instant after the gap
        moment = wall.replace(tzinfo=tz, fold=1)
    return moment


# -- entry point ----------------------------------------------------------------------------

_RULE_KEYS = frozenset({"rule", "start", "end", "tz"})


def parse(info: object, *, default_tz: str = "UTC") -> Schedule:
    """Parse a ``schedule_info`` JSON value (already decoded); ScheduleError if invalid.

    ``default_tz`` is the zone of schedules that name none (``JOBS_CRON_TZ``).
    """
    tz = zone(default_tz, "default time zone")
    if isinstance(info, str):
        if len(info.split()) in (5, 6):
            try:
                return Recurring(parse_cron(info, "cron"), tz)
            except ScheduleError as cron_error:
                try:  # as node-schedule: what is not a cron expression may be a date
                    return OneOff(_date(info, "schedule_info", tz))
                except ScheduleError:
                    raise cron_error from None
        try:
            return OneOff(_date(info, "schedule_info", tz))
        except ScheduleError:
            raise ScheduleError(
                f"schedule_info: {_show(info)} is neither a cron expression (5 or 6 fields)"
                " nor a date"
            ) from None
    if isinstance(info, int | float) and not isinstance(info, bool):
        return OneOff(_date(info, "schedule_info", tz))
    if not isinstance(info, dict):
        raise ScheduleError(
            "schedule_info: expected a cron string, a date, or an object"
            f' ({{"rule": ...}} or a recurrence), got {_show(info)}'
        )
    if info.get("tz") is not None:
        tz = zone(info["tz"])
    if "rule" in info:
        unknown = sorted(set(info) - _RULE_KEYS)
        if unknown:
            raise ScheduleError(
                f'schedule_info: unknown key "{unknown[0]}" beside "rule"'
                " (expected rule, start, end, tz)"
            )
        times = parse_cron(info["rule"], "rule")
        start = None if info.get("start") is None else _date(info["start"], "start", tz)
        end = None if info.get("end") is None else _date(info["end"], "end", tz)
        if start is not None and end is not None and start > end:
            raise ScheduleError(f"start ({start.isoformat()}) is after end ({end.isoformat()})")
        return Recurring(times, tz, start, end)
    unknown = sorted(set(info) - set(_RECURRENCE_UNITS) - {"tz", "start", "end"})
    if unknown:
        raise ScheduleError(
            f'schedule_info: unknown key "{unknown[0]}" (expected rule, or any of year, month,'
            " date, dayOfWeek, hour, minute, second, tz)"
        )
    return _recurrence(info, tz)
