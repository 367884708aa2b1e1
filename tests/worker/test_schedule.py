"""schedule_info → next fire times: every form, cron syntax, zones, DST, bounds, errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobservice.cron import OneOff, ScheduleError, finished_reason, first_fire, parse

Info = object


def at(text: str) -> datetime:
    """An aware UTC instant from ``YYYY-MM-DDTHH:MM[:SS]`` (UTC unless it has an offset)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fires(info: Info, now: str, count: int, default_tz: str = "UTC") -> list[str | None]:
    """The next ``count`` fires after ``now`` as UTC ``YYYY-MM-DDTHH:MM:SS`` (None = never)."""
    schedule = parse(info, default_tz=default_tz)
    out: list[str | None] = []
    moment = at(now)
    for _ in range(count):
        nxt = schedule.next_after(moment)
        if nxt is None:
            out.append(None)
            break
        assert nxt.tzinfo is not None
        out.append(nxt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        moment = nxt
    return out


# -- cron: 5 and 6 fields, lists, ranges, steps, names --------------------------------------

CRON_CASES = [
    pytest.param(
        "*/15 * * * *",
        "2024-01-01T00:07:30",
        ["2024-01-01T00:15:00", "2024-01-01T00:30:00", "2024-01-01T00:45:00",
         "2024-01-01T01:00:00"],
        id="step-every-15-minutes",
    ),
    pytest.param(
        "5,10-12 3 * * *",
        "2024-01-01T00:00",
        ["2024-01-01T03:05:00", "2024-01-01T03:10:00", "2024-01-01T03:11:00",
         "2024-01-01T03:12:00", "2024-01-02T03:05:00"],
        id="list-and-range",
    ),
    pytest.param(
        "0 8-18/4 * * *",
        "2024-01-01T00:00",
        ["2024-01-01T08:00:00", "2024-01-01T12:00:00", "2024-01-01T16:00:00",
         "2024-01-02T08:00:00"],
        id="stepped-range",
    ),
    pytest.param(
        "30/15 * * * *",
        "2024-01-01T00:00",
        ["2024-01-01T00:30:00", "2024-01-01T00:45:00", "2024-01-01T01:30:00"],
        id="start-slash-step",
    ),
    pytest.param(
        "0 9 * * MON-FRI",
        "2024-01-05T10:00",  # a Friday, after 09:00
        ["2024-01-08T09:00:00", "2024-01-09T09:00:00", "2024-01-10T09:00:00"],
        id="weekday-names-range",
    ),
    pytest.param(
        "0 12 * * 7",
        "2024-01-01T00:00",
        ["2024-01-07T12:00:00", "2024-01-14T12:00:00"],
        id="seven-is-sunday",
    ),
    pytest.param(
        "0 12 * * sun",
        "2024-01-01T00:00",
        ["2024-01-07T12:00:00", "2024-01-14T12:00:00"],
        id="lowercase-day-name",
    ),
    pytest.param(
        "0 0 1 jan,Jul *",
        "2024-01-01T00:00",
        ["2024-07-01T00:00:00", "2025-01-01T00:00:00", "2025-07-01T00:00:00"],
        id="month-names",
    ),
    pytest.param(
        "0 0 13 * 5",
        "2024-01-01T00:00",
        ["2024-01-05T00:00:00", "2024-01-12T00:00:00", "2024-01-13T00:00:00",
         "2024-01-19T00:00:00", "2024-01-26T00:00:00", "2024-02-02T00:00:00"],
        id="dom-dow-or-when-both-restricted",
    ),
    pytest.param(
        "0 0 13 * *",
        "2024-01-01T00:00",
        ["2024-01-13T00:00:00", "2024-02-13T00:00:00"],
        id="dom-only",
    ),
    pytest.param(
        "0 0 * * 5",
        "2024-01-01T00:00",
        ["2024-01-05T00:00:00", "2024-01-12T00:00:00"],
        id="dow-only",
    ),
    pytest.param(
        "0 0 ? * MON",
        "2024-01-01T00:00",
        ["2024-01-08T00:00:00", "2024-01-15T00:00:00"],
        id="question-mark-day",
    ),
    pytest.param(
        "0 0 */10 * *",
        "2024-01-01T00:00",
        ["2024-01-11T00:00:00", "2024-01-21T00:00:00", "2024-01-31T00:00:00",
         "2024-02-01T00:00:00"],
        id="dom-step",
    ),
    pytest.param(
        "0 0 31 * *",
        "2024-01-31T00:00",
        ["2024-03-31T00:00:00", "2024-05-31T00:00:00"],
        id="day-31-skips-short-months",
    ),
    pytest.param(
        "0 0 29 2 *",
        "2024-03-01T00:00",
        ["2028-02-29T00:00:00", "2032-02-29T00:00:00"],
        id="leap-day",
    ),
    pytest.param(
        "0 0 1 1 *",
        "2024-01-01T00:00",  # exactly on a fire: the next one is strictly after
        ["2025-01-01T00:00:00", "2026-01-01T00:00:00"],
        id="strictly-after",
    ),
    pytest.param(
        "* * * * *",
        "2024-01-01T00:00:59.500000",
        ["2024-01-01T00:01:00", "2024-01-01T00:02:00"],
        id="fractional-now",
    ),
    pytest.param(
        "*/5 * * * * *",
        "2024-01-01T00:00:07",
        ["2024-01-01T00:00:10", "2024-01-01T00:00:15", "2024-01-01T00:00:20"],
        id="six-fields-every-5-seconds",
    ),
    pytest.param(
        "30 0 12 * * *",
        "2024-01-01T00:00",
        ["2024-01-01T12:00:30", "2024-01-02T12:00:30"],
        id="six-fields-leading-seconds",
    ),
    pytest.param(
        "0,30 */30 * * * *",
        "2024-01-01T00:00:10",
        ["2024-01-01T00:00:30", "2024-01-01T00:30:00", "2024-01-01T00:30:30",
         "2024-01-01T01:00:00"],
        id="six-fields-lists",
    ),
    pytest.param(
        "59 59 23 31 12 *",
        "2024-06-01T00:00",
        ["2024-12-31T23:59:59", "2025-12-31T23:59:59"],
        id="six-fields-last-second-of-year",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("info", "now", "expected"), CRON_CASES)
def test_cron_string(info: str, now: str, expected: list[str]) -> None:
    assert fires(info, now, len(expected)) == expected
    assert fires({"rule": info}, now, len(expected)) == expected


# -- the rule form: start, end, tz; DST ---------------------------------------------------

RULE_CASES = [
    pytest.param(
        {"rule": "0 * * * *", "start": "2030-01-01T00:00:00Z"},
        "2024-01-01T00:00",
        ["2030-01-01T00:00:00", "2030-01-01T01:00:00"],
        id="start-in-the-future-is-inclusive",
    ),
    pytest.param(
        {"rule": "0 * * * *", "start": "2030-01-01T00:30:00", "tz": "Europe/Paris"},
        "2024-01-01T00:00",
        ["2030-01-01T00:00:00", "2030-01-01T01:00:00"],  # 01:00 and 02:00 in Paris
        id="naive-start-is-in-the-schedule-zone",
    ),
    pytest.param(
        {"rule": "0 0 * * *", "start": "2020-01-01T00:00:00Z"},
        "2024-01-01T12:00",
        ["2024-01-02T00:00:00"],
        id="start-in-the-past-is-ignored",
    ),
    pytest.param(
        {"rule": "0 0 * * *", "start": 1893456000000},
        "2024-01-01T00:00",
        ["2030-01-01T00:00:00"],
        id="start-as-epoch-milliseconds",
    ),
    pytest.param(
        {"rule": "0 0 * * *", "end": "2024-01-03T00:00:00Z"},
        "2024-01-01T12:00",
        ["2024-01-02T00:00:00", "2024-01-03T00:00:00", None],
        id="end-is-inclusive-then-never",
    ),
    pytest.param(
        {"rule": "0 9 * * *", "tz": "America/New_York"},
        "2024-01-01T00:00",
        ["2024-01-01T14:00:00"],
        id="tz-winter",
    ),
    pytest.param(
        {"rule": "0 9 * * *", "tz": "America/New_York"},
        "2024-07-01T00:00",
        ["2024-07-01T13:00:00"],
        id="tz-summer",
    ),
    pytest.param(
        {"rule": "0 0 1 1 *", "tz": "Asia/Kolkata"},
        "2024-06-01T00:00",
        ["2024-12-31T18:30:00"],
        id="tz-half-hour-offset",
    ),
    pytest.param(
        {"rule": "30 2 * * *", "tz": "America/New_York"},
        "2024-03-09T00:00",  # 2024-03-10 02:30 does not exist in New York
        ["2024-03-09T07:30:00", "2024-03-11T06:30:00", "2024-03-12T06:30:00"],
        id="dst-skipped-local-time-is-skipped",
    ),
    pytest.param(
        {"rule": "0 * * * *", "tz": "America/New_York"},
        "2024-03-10T05:30",
        ["2024-03-10T06:00:00", "2024-03-10T07:00:00", "2024-03-10T08:00:00"],
        id="dst-hourly-through-spring-forward",  # 01:00 EST, 03:00 EDT, 04:00 EDT
    ),
    pytest.param(
        {"rule": "30 1 * * *", "tz": "America/New_York"},
        "2024-11-02T12:00",  # 2024-11-03 01:30 happens twice in New York
        ["2024-11-03T05:30:00", "2024-11-04T06:30:00"],
        id="dst-repeated-local-time-fires-once",
    ),
    pytest.param(
        {"rule": "*/30 1 * * *", "tz": "America/New_York"},
        "2024-11-03T04:50",
        ["2024-11-03T05:00:00", "2024-11-03T05:30:00", "2024-11-04T06:00:00"],
        id="dst-repeated-hour-of-a-fixed-hour-rule-fires-once",
    ),
    pytest.param(
        {"rule": "*/30 * * * *", "tz": "America/New_York"},
        "2024-11-03T04:50",
        ["2024-11-03T05:00:00", "2024-11-03T05:30:00", "2024-11-03T06:00:00",
         "2024-11-03T06:30:00", "2024-11-03T07:00:00"],
        id="dst-every-hour-rule-fires-through-the-repeated-hour",
    ),
    pytest.param(
        {"rule": "0 1 * * *", "tz": "Europe/London"},
        "2024-03-30T12:00",  # 2024-03-31 01:00 does not exist in London
        ["2024-04-01T00:00:00"],
        id="dst-london-spring-forward",
    ),
    pytest.param(
        {"rule": "0 0 * * *", "tz": None},
        "2024-01-01T12:00",
        ["2024-01-02T00:00:00"],
        id="tz-null-means-default",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("info", "now", "expected"), RULE_CASES)
def test_rule_form(info: Info, now: str, expected: list[str | None]) -> None:
    assert fires(info, now, len(expected)) == expected


def test_default_zone_comes_from_the_caller() -> None:
    assert fires("0 9 * * *", "2024-01-01T00:00", 1, "Europe/Paris") == ["2024-01-01T08:00:00"]
    assert fires({"rule": "0 9 * * *"}, "2023-12-31T12:00", 1, "Asia/Tokyo") == [
        "2024-01-01T00:00:00"
    ]
    # a zone named by the schedule wins over the default
    info = {"rule": "0 9 * * *", "tz": "UTC"}
    assert fires(info, "2024-01-01T00:00", 1, "Asia/Tokyo") == ["2024-01-01T09:00:00"]


# -- recurrence objects (node-schedule RecurrenceRule meanings) ---------------------------

RECURRENCE_CASES = [
    pytest.param(
        {"hour": [2], "minute": [0]},
        "2024-01-01T00:00",
        ["2024-01-01T02:00:00", "2024-01-02T02:00:00"],
        id="daily-at-two",
    ),
    pytest.param(
        {"second": [0, 10, 20, 30, 40, 50]},
        "2024-01-01T00:00:05",
        ["2024-01-01T00:00:10", "2024-01-01T00:00:20", "2024-01-01T00:00:30"],
        id="every-ten-seconds",
    ),
    pytest.param(
        {},
        "2024-01-01T00:00:05",
        ["2024-01-01T00:01:00", "2024-01-01T00:02:00"],
        id="empty-object-every-minute-missing-second-is-zero",
    ),
    pytest.param(
        {"second": None, "minute": 0, "hour": 0},
        "2024-01-01T00:00:05",
        ["2024-01-01T00:00:06", "2024-01-01T00:00:07"],
        id="explicit-null-second-means-any",
    ),
    pytest.param(
        {"month": 0, "date": 1, "hour": 0, "minute": 0},
        "2024-06-01T00:00",
        ["2025-01-01T00:00:00", "2026-01-01T00:00:00"],
        id="month-is-zero-based-january",
    ),
    pytest.param(
        {"month": 11, "date": 25, "hour": 8, "minute": 0},
        "2024-01-01T00:00",
        ["2024-12-25T08:00:00", "2025-12-25T08:00:00"],
        id="month-eleven-is-december",
    ),
    pytest.param(
        {"dayOfWeek": 0, "hour": 10, "minute": 0},
        "2024-01-01T00:00",
        ["2024-01-07T10:00:00", "2024-01-14T10:00:00"],
        id="day-of-week-zero-is-sunday",
    ),
    pytest.param(
        {"dayOfWeek": [1, 3, 5], "hour": 7, "minute": 30},
        "2024-01-01T08:00",  # a Monday after 07:30
        ["2024-01-03T07:30:00", "2024-01-05T07:30:00", "2024-01-08T07:30:00"],
        id="day-of-week-list",
    ),
    pytest.param(
        {"date": 13, "dayOfWeek": 5, "hour": 0, "minute": 0},
        "2024-01-01T00:00",
        ["2024-09-13T00:00:00", "2024-12-13T00:00:00"],
        id="date-and-day-of-week-both-must-match",
    ),
    pytest.param(
        {"minute": {"start": 0, "end": 59, "step": 20}, "hour": 1},
        "2024-01-01T00:00",
        ["2024-01-01T01:00:00", "2024-01-01T01:20:00", "2024-01-01T01:40:00",
         "2024-01-02T01:00:00"],
        id="range-object-with-step",
    ),
    pytest.param(
        {"hour": {"start": 9, "end": 11}, "minute": 0},
        "2024-01-01T00:00",
        ["2024-01-01T09:00:00", "2024-01-01T10:00:00", "2024-01-01T11:00:00",
         "2024-01-02T09:00:00"],
        id="range-object-end-inclusive",
    ),
    pytest.param(
        {"hour": [1, {"start": 20, "end": 21}], "minute": "15"},
        "2024-01-01T00:00",
        ["2024-01-01T01:15:00", "2024-01-01T20:15:00", "2024-01-01T21:15:00"],
        id="list-mixing-numbers-and-ranges-numeric-string",
    ),
    pytest.param(
        {"year": 2030, "month": 0, "date": 1, "hour": 0, "minute": 0},
        "2024-01-01T00:00",
        ["2030-01-01T00:00:00", None],
        id="year-then-never",
    ),
    pytest.param(
        {"month": 1, "date": 29, "dayOfWeek": 0, "hour": 0, "minute": 0},
        "2024-03-01T00:00",
        ["2032-02-29T00:00:00"],
        id="rare-leap-sunday",
    ),
    pytest.param(
        {"hour": 3, "minute": 0, "end": "2000-01-01T00:00:00Z", "start": "2099-01-01"},
        "2024-01-01T00:00",
        ["2024-01-01T03:00:00"],
        id="start-and-end-ignored",
    ),
    pytest.param(
        {"hour": 9, "minute": 0, "tz": "Asia/Tokyo"},
        "2024-01-01T01:00",
        ["2024-01-02T00:00:00"],
        id="tz-honoured",
    ),
    pytest.param(
        {"hour": 2, "minute": 30, "tz": "America/New_York"},
        "2024-03-09T12:00",
        ["2024-03-11T06:30:00"],
        id="dst-skipped-time-skipped",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("info", "now", "expected"), RECURRENCE_CASES)
def test_recurrence_object(info: Info, now: str, expected: list[str | None]) -> None:
    assert fires(info, now, len(expected)) == expected


# -- one-off dates --------------------------------------------------------------------------

ONE_OFF_CASES = [
    pytest.param("2030-01-01T00:00:00Z", "UTC", "2030-01-01T00:00:00", id="iso-utc"),
    pytest.param("2030-01-01T00:00:00.000Z", "UTC", "2030-01-01T00:00:00", id="iso-js-json"),
    pytest.param("2030-01-01T12:00:00+02:00", "UTC", "2030-01-01T10:00:00", id="iso-offset"),
    pytest.param(
        "2030-01-01T09:00:00", "Europe/Paris", "2030-01-01T08:00:00", id="naive-default-zone"
    ),
    pytest.param(1893456000000, "UTC", "2030-01-01T00:00:00", id="epoch-milliseconds"),
    pytest.param("Tue, 01 Jan 2030 00:00:00 GMT", "UTC", "2030-01-01T00:00:00", id="rfc-2822"),
]


@pytest.mark.parametrize(("info", "tz", "expected"), ONE_OFF_CASES)
def test_one_off_fires_once(info: Info, tz: str, expected: str) -> None:
    assert fires(info, "2024-01-01T00:00", 3, tz) == [expected, None]
    assert isinstance(parse(info, default_tz=tz), OneOff)


def test_one_off_after_its_time_never_fires() -> None:
    schedule = parse("2030-01-01T00:00:00Z")
    assert schedule.next_after(at("2030-01-01T00:00")) is None
    assert schedule.next_after(at("2031-01-01T00:00")) is None


# -- planning a schedule ------------------------------------------------------------------


def test_first_fire_is_the_next_fire() -> None:
    schedule = parse({"rule": "0 0 * * *", "end": "2030-01-01T00:00:00Z"})
    assert first_fire(schedule, at("2024-01-01T12:00")) == at("2024-01-02T00:00")


FIRST_FIRE_ERRORS = [
    pytest.param(
        {"rule": "* * * * *", "end": "2020-01-01T00:00:00Z"}, "end is in the past", id="end-past"
    ),
    pytest.param(
        {"rule": "0 0 1 1 *", "end": "2024-06-01T00:00:00Z"},
        "never fires before end",
        id="nothing-before-end",
    ),
    pytest.param(
        "2020-01-01T00:00:00Z", "date 2020-01-01T00:00:00+00:00 is in the past", id="one-off-past"
    ),
    pytest.param({"year": 2020}, "never fires after 2024-02-01", id="years-past"),
]


@pytest.mark.parametrize(("info", "message"), FIRST_FIRE_ERRORS)
def test_first_fire_refuses_schedules_that_never_fire(info: Info, message: str) -> None:
    schedule = parse(info)
    with pytest.raises(ScheduleError) as caught:
        first_fire(schedule, at("2024-02-01T00:00"))
    assert message in str(caught.value)


def test_next_after_needs_an_aware_moment() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("* * * * *").next_after(datetime(2024, 1, 1))


# -- invalid specs and their messages -----------------------------------------------------

INVALID = [
    ("61 * * * *", 'cron: minute field "61" is out of range 0-59'),
    ({"rule": "61 * * * *"}, 'rule: minute field "61" is out of range 0-59'),
    ({"rule": "60 * * * * *"}, 'rule: second field "60" is out of range 0-59'),
    ({"rule": "* 24 * * *"}, 'rule: hour field "24" is out of range 0-23'),
    ({"rule": "0 0 0 * *"}, 'rule: day-of-month field "0" is out of range 1-31'),
    ({"rule": "0 0 * 13 *"}, 'rule: month field "13" is out of range 1-12'),
    ({"rule": "0 0 * * 8"}, 'rule: day-of-week field "8" is out of range 0-7'),
    ({"rule": "0 0 * FOO *"}, 'rule: month field "FOO" is not a number or a name'),
    ({"rule": "0 MON * * *"}, 'rule: hour field "MON" is not a number'),
    ({"rule": "* * * *"}, "rule: expected 5 or 6 fields (6 with leading seconds), got 4"),
    ({"rule": "* * * * * * *"}, "rule: expected 5 or 6 fields (6 with leading seconds), got 7"),
    ({"rule": "*/0 * * * *"}, 'rule: minute field "*/0" needs a positive whole step'),
    ({"rule": "*/x * * * *"}, 'rule: minute field "*/x" needs a positive whole step'),
    ({"rule": "5-1 * * * *"}, 'rule: minute field "5-1" is a reversed range (5 > 1)'),
    ({"rule": "1,,2 * * * *"}, 'rule: minute field "1,,2" has an empty list item'),
    ({"rule": "? * * * *"}, "only allowed in the day fields"),
    ({"rule": 5}, "rule: expected a cron expression string, got 5"),
    ({"rule": "0 0 30 2 *"}, 'rule: day-of-month "30" never occurs in month "2"'),
    ({"rule": "* * * * *", "tz": "Mars/Base"}, 'tz: unknown time zone "Mars/Base"'),
    ({"rule": "* * * * *", "tz": 3}, "tz: expected an IANA time zone name, got 3"),
    ({"rule": "* * * * *", "start": "soon"}, 'start: "soon" is not a date'),
    ({"rule": "* * * * *", "end": True}, "end: expected a date, got true"),
    (
        {"rule": "* * * * *", "start": "2030-01-02T00:00:00Z", "end": "2030-01-01T00:00:00Z"},
        "start (2030-01-02T00:00:00+00:00) is after end (2030-01-01T00:00:00+00:00)",
    ),
    ({"rule": "* * * * *", "every": 5}, 'unknown key "every" beside "rule"'),
    ({"month": 12}, "month: 12 is out of range 0-11"),
    ({"dayOfWeek": 7}, "dayOfWeek: 7 is out of range 0-6"),
    ({"date": 0}, "date: 0 is out of range 1-31"),
    ({"minutes": 5}, 'schedule_info: unknown key "minutes"'),
    ({"hour": []}, "hour: an empty list never matches"),
    ({"hour": 1.5}, "hour: expected a whole number, got 1.5"),
    ({"hour": True}, "hour: expected a whole number, got true"),
    ({"minute": {"start": 0, "stop": 5}}, 'minute: unknown range key "stop"'),
    ({"hour": {"start": 5, "end": 2}}, "hour: range start 5 is after its end 2"),
    ({"minute": {"start": 0, "end": 70}}, "minute.end: 70 is out of range 0-59"),
    ({"minute": {"step": 0}}, "minute.step: expected a positive whole number, got 0"),
    ({"month": 1, "date": 30}, "date: [30] never occurs in month [1] (months are 0-based)"),
    ({"hour": 1, "tz": "Nowhere/City"}, 'tz: unknown time zone "Nowhere/City"'),
    ("every day", 'schedule_info: "every day" is neither a cron expression'),
    ("* * * 99 *", 'cron: month field "99" is out of range 1-12'),
    (None, "schedule_info: expected a cron string, a date, or an object"),
    (True, "schedule_info: expected a cron string, a date, or an object"),
    ([1, 2], "schedule_info: expected a cron string, a date, or an object"),
    (1e20, "schedule_info: 1e+20 is not a valid epoch in milliseconds"),
]


@pytest.mark.parametrize(("info", "message"), INVALID)
def test_invalid_spec_names_the_problem(info: Info, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse(info)
    assert message in str(caught.value)


def test_unknown_default_zone_is_refused() -> None:
    with pytest.raises(ScheduleError, match='default time zone: unknown time zone "Nowhere/X"'):
        parse("* * * * *", default_tz="Nowhere/X")


FINISHED = [
    ("2001-01-01T00:00:00Z", "finished: the one-off date 2001-01-01T00:00:00+00:00 has passed"),
    (
        {"rule": "* * * * *", "end": "2001-01-01T00:00:00Z"},
        "finished: end 2001-01-01T00:00:00+00:00 has passed",
    ),
    ({"year": 2001}, "finished: no fire after 2024-02-01T00:00:00+00:00"),
]


@pytest.mark.parametrize(("info", "reason"), FINISHED)
def test_finished_reason_says_why_it_never_fires_again(info: Info, reason: str) -> None:
    schedule = parse(info)
    assert schedule.next_after(at("2024-02-01T00:00")) is None
    assert finished_reason(schedule, at("2024-02-01T00:00")) == reason
