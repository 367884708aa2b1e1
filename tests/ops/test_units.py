"""The pure parts of the operations side: payload parameters, durations, the access rules,
notification payloads, SSE messages and slow-subscriber dropping, table rendering."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobservice import apiauth, inputs
from jobservice.config import ConfigError, Settings, load_settings
from jobservice.durations import describe, parse_duration
from jobservice.events import EventHub, message, parse_notification
from jobservice.render import Output, relative


def test_params_nest_and_parse_scalars() -> None:
    payload = inputs.apply_params(
        {"to": "a@example.com", "options": {"keep": 1}},
        ["n=3", "ratio=-0.25", "big=1e3", "zip=007", "yes=true", "no=false", "none=null",
         "options.draft=true", "deep.er.est=x=y", "text=hello world"],
    )  # fmt: skip
    assert payload == {
        "to": "a@example.com",
        "options": {"keep": 1, "draft": True},
        "n": 3,
        "ratio": -0.25,
        "big": 1000.0,
        "zip": "007",
        "yes": True,
        "no": False,
        "none": None,
        "deep": {"er": {"est": "x=y"}},
        "text": "hello world",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["novalue"], "--param: expected key=value with a non-empty key (got 'novalue')"),
        (["a..b=1"], "--param: expected key=value with a non-empty key (got 'a..b=1')"),
        (["a=1", "a.b=2"], "--param: a is already a value, cannot set a.b"),
    ],
)
def test_bad_params_name_the_problem(params: list[str], message: str) -> None:
    with pytest.raises(inputs.InputError) as caught:
        inputs.apply_params({}, params)
    assert str(caught.value) == message


def test_durations_and_run_times() -> None:
    assert parse_duration("10m") == timedelta(minutes=10)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("10 minutes") is None
    assert describe(timedelta(seconds=3725)) == "1h 2m"
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert inputs.run_at(None, "2d", now=now) == datetime(2030, 1, 3, tzinfo=UTC)
    assert inputs.run_at(None, None) is None
    assert relative(now - timedelta(minutes=5), now) == "5m ago"
    assert relative(now + timedelta(hours=2), now) == "in 2h"


def test_history_retention_setting() -> None:
    base = {"JOBS_INSECURE_CALLBACKS": "true"}
    assert load_settings(base).history_retention == 7 * 86400
    assert load_settings({**base, "JOBS_HISTORY_RETENTION": "12h"}).history_retention == 43200
    with pytest.raises(ConfigError) as caught:
        load_settings({**base, "JOBS_HISTORY_RETENTION": "forever"})
    assert str(caught.value).startswith("JOBS_HISTORY_RETENTION: expected a duration like 90s")


def test_access_rules() -> None:
    assert apiauth.is_loopback("127.0.0.1")
    assert apiauth.is_loopback("[::1]")
    assert apiauth.is_loopback("localhost")
    assert not apiauth.is_loopback("0.0.0.0")
    token = "a-token-of-twenty-chars"
    assert apiauth.allowed(token, authorization=f"Bearer {token}", cookie=None, host="x")
    assert apiauth.allowed(token, authorization=None, cookie=token, host="x")
    assert not apiauth.allowed(token, authorization="Bearer nope", cookie="nope", host="x")
    assert not apiauth.allowed(token, authorization=token, cookie=None, host="x")
    assert apiauth.allowed(None, authorization=None, cookie=None, host="127.0.0.1:8080")
    assert not apiauth.allowed(None, authorization=None, cookie=None, host="evil.example:80")
    assert apiauth.same_origin(None, "h:1")
    assert apiauth.same_origin("http://h:1", "h:1")
    assert not apiauth.same_origin("null", "h:1")
    assert not apiauth.same_origin("http://evil:1", "h:1")
    # a browser that says where the request comes from (Fetch Metadata) is believed
    assert apiauth.same_origin(None, "h:1", "same-origin")
    assert apiauth.same_origin(None, "h:1", "none")
    assert not apiauth.same_origin(None, "h:1", "cross-site")
    assert not apiauth.same_origin("http://h:1", "h:1", "same-site")


def test_the_service_settings_are_checked() -> None:
    apiauth.check_settings(Settings(callback_bind="127.0.0.1"))
    apiauth.check_settings(Settings(callback_bind="0.0.0.0", api_token="x" * 32))
    apiauth.check_settings(Settings(callback_bind="0.0.0.0", callback_server_enabled=False))
    with pytest.raises(ConfigError, match=r"^JOBS_API_TOKEN: expected a token"):
        apiauth.check_settings(Settings(callback_bind="0.0.0.0"))
    with pytest.raises(ConfigError, match=r"^JOBS_API_TOKEN: expected a random secret of at le"):
        apiauth.check_settings(Settings(callback_bind="127.0.0.1", api_token="short"))
    placeholder = "change-me-to-a-long-random-token-0123456789"
    with pytest.raises(ConfigError, match=r"^JOBS_API_TOKEN: .*placeholder") as info:
        apiauth.check_settings(Settings(callback_bind="127.0.0.1", api_token=placeholder))
    assert placeholder not in str(info.value)


SERVICE_ENV = {"HOSTNAME": "pod-1", "JOBS_INSECURE_CALLBACKS": "true"}


def test_the_api_token_can_come_from_a_file(tmp_path: Path) -> None:
    token = "file-token-" + "t" * 40
    (tmp_path / "api-token").write_text(token + "\n")
    settings = load_settings({**SERVICE_ENV, "JOBS_API_TOKEN_FILE": str(tmp_path / "api-token")})
    assert settings.api_token == token
    assert load_settings(SERVICE_ENV).api_token is None


@pytest.mark.parametrize(
    ("env", "start"),
    [
        # the placeholder deploy/secrets.yaml ships: long enough, still refused
        ({"JOBS_API_TOKEN": "change-me-to-a-long-random-token"}, "JOBS_API_TOKEN: expected a "),
        ({"JOBS_API_TOKEN": "Change-Me-" + "x" * 40}, "JOBS_API_TOKEN: expected a "),
        ({"JOBS_API_TOKEN": "short-token-16ch"}, "JOBS_API_TOKEN: expected a random secret"),
        ({"JOBS_API_TOKEN_FILE": "/nonexistent/api-token"}, "JOBS_API_TOKEN_FILE: expected a "),
        ({"JOBS_API_TOKEN_FILE": "{placeholder}"}, "JOBS_API_TOKEN_FILE: expected a "),
        ({"JOBS_API_TOKEN_FILE": "{empty}"}, "JOBS_API_TOKEN_FILE: expected a file"),
        (
            {"JOBS_API_TOKEN_FILE": "{placeholder}", "JOBS_API_TOKEN": "y" * 40},
            "JOBS_API_TOKEN: expected either JOBS_API_TOKEN or JOBS_API_TOKEN_FILE",
        ),
    ],
)
def test_unusable_api_tokens_are_refused_in_one_line(
    tmp_path: Path, env: dict[str, str], start: str
) -> None:
    (tmp_path / "placeholder").write_text("change-me-to-a-long-random-token\n")
    (tmp_path / "empty").write_text("\n")
    files = {"{placeholder}": str(tmp_path / "placeholder"), "{empty}": str(tmp_path / "empty")}
    env = {k: files.get(v, v) for k, v in env.items()}
    with pytest.raises(ConfigError) as info:
        load_settings({**SERVICE_ENV, **env})
    text = str(info.value)
    assert text.startswith(start)
    assert "\n" not in text
    assert "change-me-to" not in text


def test_notification_payloads_and_messages() -> None:
    assert parse_notification("U:1,2,30") == [1, 2, 30]
    assert parse_notification("D:*") is None
    assert message("job", {"id": 3, "at": datetime(2030, 1, 1, tzinfo=UTC)}) == (
        b'event: job\ndata: {"id":3,"at":"2030-01-01T00:00:00+00:00"}\n\n'
    )


def test_a_slow_subscriber_is_dropped_not_waited_for() -> None:
    pool: Any = None
    hub = EventHub("", pool, lookup=None, queue_size=2)  # type: ignore[arg-type]
    slow, other, one_job = hub.subscribe(), hub.subscribe(), hub.subscribe(job_id=7)
    for n in range(3):
        hub.publish(message("job", {"id": n}), None)
        other.queue.get_nowait()
    assert slow.dropped
    assert slow not in hub.subscribers
    assert not other.dropped
    assert one_job.dropped  # refresh-all messages reach one-job subscribers too
    hub.publish(message("job", {"id": 8}), 8)
    assert other.queue.qsize() == 1
    hub.close()
    assert other.dropped


def test_plain_tables_when_not_a_terminal() -> None:
    out = io.StringIO()
    Output(out, json_mode=False, env={}).table(
        [{"id": 1, "status": "failed", "duration": 0.25}], ["id", "status", "duration"]
    )
    assert out.getvalue().splitlines() == ["id  status  duration", "1   failed  250 ms"]
