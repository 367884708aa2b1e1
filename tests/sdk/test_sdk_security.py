"""Where secrets come from and where a function without one may call back (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobfn import ConfigError, job_function
from jobfn.security import CallbackAllowList, callback_allow_list, read_secret, signing_secrets
from jobfn.testing import invoke

SECRET = "sdk-security-secret-0123456789abcdef012"


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        (["http://jobs-callback:12345"], "http://jobs-callback:12345/callback", True),
        (["http://jobs-callback:12345"], "http://JOBS-CALLBACK:12345/anything", True),
        (["http://jobs-callback:12345"], "http://jobs-callback:12346/callback", False),
        (["http://jobs-callback:12345"], "https://jobs-callback:12345/callback", False),
        (["http://jobs-callback"], "http://jobs-callback:80/callback", True),
        (["https://cb.example"], "https://cb.example:443/callback", True),
        (["http://h:1/callback"], "http://h:1/callback", True),
        (["http://h:1/callback"], "http://h:1/callback/x", True),
        (["http://h:1/callback"], "http://h:1/callbackx", False),
        (["http://h:1/callback"], "http://h:1/other", False),
        (["http://h:1"], "http://user@h:1/callback", False),  # user info: never
        (["http://h:1"], "ftp://h:1/callback", False),
        (["http://h:1"], "not a url", False),
        ([], "http://h:1/callback", False),
    ],
)
def test_allow_list_matches_origins_and_path_prefixes(
    entries: list[str], url: str, allowed: bool
) -> None:
    assert CallbackAllowList(entries).allows(url) is allowed


def test_allow_list_defaults_to_the_callback_url_origin_else_nothing() -> None:
    env = {"INTERNAL_JOBS_CALLBACK_URL": "http://jobs-callback:12345/callback"}
    assert callback_allow_list(env).allows("http://jobs-callback:12345/callback")
    assert not callback_allow_list(env).allows("http://elsewhere:12345/callback")
    assert not callback_allow_list({}).allows("http://jobs-callback:12345/callback")
    explicit = {**env, "JOBS_CALLBACK_ALLOWED_URLS": "http://a:1, http://b:2/cb"}
    assert callback_allow_list(explicit).allows("http://b:2/cb")
    assert not callback_allow_list(explicit).allows("http://jobs-callback:12345/callback")
    with pytest.raises(ConfigError, match=r"^JOBS_CALLBACK_ALLOWED_URLS: expected"):
        callback_allow_list({"JOBS_CALLBACK_ALLOWED_URLS": "jobs-callback:12345"})


def test_secrets_from_variables_and_files(tmp_path: Path) -> None:
    current = tmp_path / "current"
    current.write_text(f"  {SECRET}\n")
    assert read_secret("JOBS_SIGNING_SECRET", {"JOBS_SIGNING_SECRET_FILE": str(current)}) == SECRET
    assert signing_secrets({"JOBS_SIGNING_SECRET": SECRET}) == [SECRET]
    assert signing_secrets({}) == []
    previous = {"JOBS_SIGNING_SECRET": SECRET, "JOBS_SIGNING_SECRET_PREVIOUS": "p" * 32}
    assert signing_secrets(previous) == [SECRET, "p" * 32]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JOBS_SIGNING_SECRET": "short"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET": "change-me-" + "x" * 40}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET_FILE": "/nonexistent/file"}, "JOBS_SIGNING_SECRET_FILE"),
        ({"JOBS_SIGNING_SECRET": SECRET, "JOBS_SIGNING_SECRET_FILE": "/x"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET_PREVIOUS": SECRET}, "JOBS_SIGNING_SECRET"),
        (
            {"JOBS_SIGNING_SECRET": SECRET, "JOBS_SIGNING_SECRET_PREVIOUS": "tiny"},
            "JOBS_SIGNING_SECRET_PREVIOUS",
        ),
    ],
)
def test_unusable_secrets_name_the_variable_and_never_echo_the_value(
    env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError) as info:
        signing_secrets(env)
    message = str(info.value)
    assert message.startswith(f"{variable}: expected ")
    assert "\n" not in message
    assert "short" not in message
    assert "tiny" not in message


def test_a_function_refuses_to_start_with_a_bad_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_SIGNING_SECRET", "change-me-to-a-long-random-string")

    @job_function
    def guarded() -> None: ...

    with pytest.raises(ConfigError, match=r"^JOBS_SIGNING_SECRET: expected"):
        guarded.start()


def test_without_a_secret_a_foreign_callback_url_is_refused_before_the_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JOBS_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("JOBS_CALLBACK_ALLOWED_URLS", "http://jobs-callback:12345")
    ran: list[object] = []

    @job_function
    def relay(payload: dict[str, object]) -> None:
        ran.append(payload)

    foreign = {"X-Callback-Url": "http://attacker.example/steal"}
    refused = invoke(relay, {"a": 1}, foreign)
    assert refused.status == 400
    assert refused.error == (
        "X-Callback-Url http://attacker.example/steal is not allowed (JOBS_CALLBACK_ALLOWED_URLS)"
    )
    assert (ran, refused.callbacks) == ([], [])
    # Settled from the reply (our worker): runs, and sends no callback anywhere.
    direct = invoke(relay, {"a": 1}, foreign, completion="reply")
    assert (direct.status, ran, direct.callbacks) == (200, [{"a": 1}], [])
    allowed = invoke(relay, {"a": 2}, {"X-Callback-Url": "http://jobs-callback:12345/callback"})
    assert allowed.status == 200
    assert allowed.callbacks[0].url == "http://jobs-callback:12345/callback"
