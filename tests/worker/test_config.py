"""Environment → settings: defaults, every documented variable, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobservice.config import VARIABLES, ConfigError, load_settings, parse_bool

SECRET = "config-test-secret-0123456789abcdef0123"
BASE = {"HOSTNAME": "pod-1", "JOBS_SIGNING_SECRET": SECRET}


def test_defaults_match_the_reference() -> None:
    s = load_settings(BASE)
    assert s.worker_id == "pod-1"
    assert s.schema == "app_jobs"
    assert s.callback_port == 12345
    assert s.callback_url == "http://jobs-callback:12345/callback"
    assert s.gateway_url == "http://gateway:8080"
    assert s.support_any is True
    assert s.request_timeout == 300.0
    assert s.dead_worker_after + s.heartbeat_interval <= 60.0
    assert s.insecure_callbacks is False
    assert s.max_reply_bytes == 1024 * 1024


def test_every_variable_read_is_documented() -> None:
    documented = {name for var in VARIABLES for name in var.name.split()}
    for name in (
        "JOBS_CONCURRENCY",
        "JOBS_TASK_CONCURRENCY",
        "JOBS_CLAIM_BATCH",
        "JOBS_POLL_INTERVAL",
        "JOBS_REQUEST_TIMEOUT",
        "JOBS_TASK_TIMEOUT",
        "JOBS_CALLBACK_DEADLINE",
        "JOBS_SIGNING_SECRET",
        "INTERNAL_JOBS_CALLBACK_PORT",
        "INTERNAL_JOBS_CALLBACK_URL",
        "JOBS_INPROCESS",
        "JOBS_METRICS_PORT",
        "KNATIVE_SERVICE_URL",
        "INTERNAL_GATEWAY_DEVELOPMENT_MAP",
    ):
        assert name in documented


def test_values_are_read() -> None:
    s = load_settings(
        {
            "HOSTNAME": "pod-1",
            "JOBS_WORKER_ID": "explicit-id",
            "JOBS_SUPPORT_ANY": "off",
            "JOBS_SUPPORTED": "a, b ,c",
            "JOBS_CONCURRENCY": "32",
            "JOBS_TASK_CONCURRENCY": '{"a": 2}',
            "JOBS_TASK_TIMEOUT": '{"b": 1.5}',
            "JOBS_INPROCESS": '{"a": "pkg.mod:handler"}',
            "INTERNAL_JOBS_CALLBACK_PORT": "18000",
            "JOBS_CALLBACK_HOST": "cb",
            "KNATIVE_SERVICE_URL": "http://ksvc",
            "JOBS_SIGNING_SECRET": SECRET,
            "JOBS_SIGNING_SECRET_PREVIOUS": "p" * 32,
            "JOBS_MAX_REPLY_BYTES": "4096",
            "JOBS_VACUUM_EVERY": "0",
        }
    )
    assert s.worker_id == "explicit-id"
    assert s.support_any is False
    assert s.supported == ("a", "b", "c")
    assert s.concurrency == 32
    assert s.task_concurrency == {"a": 2}
    assert s.timeout_for("b") == 1.5
    assert s.timeout_for("a") == 300.0
    assert s.inprocess == {"a": "pkg.mod:handler"}
    assert s.callback_url == "http://cb:18000/callback"
    assert s.gateway_url == "http://ksvc"
    assert s.signing_secret == SECRET
    assert s.signing_secrets == (SECRET, "p" * 32)
    assert s.max_reply_bytes == 4096
    assert s.vacuum_every == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True)],
        *[("false", False), ("0", False), ("no", False), ("OFF", False)],
    ],
)
def test_booleans(raw: str, expected: bool) -> None:
    assert parse_bool("X", raw) is expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JOBS_SUPPORT_ANY": "maybe"}, "JOBS_SUPPORT_ANY"),
        ({"JOBS_CONCURRENCY": "ten"}, "JOBS_CONCURRENCY"),
        ({"JOBS_CONCURRENCY": "0"}, "JOBS_CONCURRENCY"),
        ({"JOBS_TASK_CONCURRENCY": '{"a": 0}'}, "JOBS_TASK_CONCURRENCY"),
        ({"JOBS_TASK_CONCURRENCY": "[1]"}, "JOBS_TASK_CONCURRENCY"),
        ({"JOBS_TASK_TIMEOUT": "{bad json"}, "JOBS_TASK_TIMEOUT"),
        ({"INTERNAL_GATEWAY_DEVELOPMENT_MAP": '{"a": 1}'}, "INTERNAL_GATEWAY_DEVELOPMENT_MAP"),
        ({"JOBS_INPROCESS": '{"a": "not a target"}'}, "JOBS_INPROCESS"),
        ({"INTERNAL_JOBS_CALLBACK_PORT": "70000"}, "INTERNAL_JOBS_CALLBACK_PORT"),
        ({"JOBS_POLL_INTERVAL": "-1"}, "JOBS_POLL_INTERVAL"),
        ({"JOBS_GATEWAY_URL_TEMPLATE": "http://no-placeholder"}, "JOBS_GATEWAY_URL_TEMPLATE"),
        ({"JOBS_SUPPORT_ANY": "false"}, "JOBS_SUPPORTED"),
        ({"HOSTNAME": "ab"}, "HOSTNAME"),
        ({"JOBS_CRON_TZ": "Mars/Olympus"}, "JOBS_CRON_TZ"),
        ({"JOBS_SIGNING_SECRET": ""}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET": "short"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET": "change-me-to-a-long-random-string"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_SIGNING_SECRET_PREVIOUS": "tiny"}, "JOBS_SIGNING_SECRET_PREVIOUS"),
        ({"JOBS_SIGNING_SECRET_FILE": "/nonexistent/secret"}, "JOBS_SIGNING_SECRET"),
        ({"JOBS_INSECURE_CALLBACKS": "perhaps"}, "JOBS_INSECURE_CALLBACKS"),
        ({"JOBS_MAX_REPLY_BYTES": "10"}, "JOBS_MAX_REPLY_BYTES"),
        ({"JOBS_VACUUM_EVERY": "-5"}, "JOBS_VACUUM_EVERY"),
        (
            {"JOBS_HEARTBEAT_INTERVAL": "30", "JOBS_DEAD_WORKER_AFTER": "40"},
            "JOBS_DEAD_WORKER_AFTER",
        ),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**BASE, **env})
    message = str(info.value)
    assert message.startswith(f"{variable}: expected ")
    assert "\n" not in message


def test_the_readme_documents_every_variable() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "worker" / "README.md").read_text()
    for var in VARIABLES:
        for name in var.name.split():
            assert f"`{name}`" in readme, name


def test_the_secret_is_never_echoed_in_the_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"HOSTNAME": "pod-1", "JOBS_SIGNING_SECRET": "hunter2-short"})
    assert "hunter2" not in str(info.value)
    assert "at least 32 bytes" in str(info.value)


def test_secret_from_files_and_insecure_switch(tmp_path: Path) -> None:
    current = tmp_path / "current"
    current.write_text(SECRET + "\n")
    previous = tmp_path / "previous"
    previous.write_text("q" * 40)
    s = load_settings(
        {
            "HOSTNAME": "pod-1",
            "JOBS_SIGNING_SECRET_FILE": str(current),
            "JOBS_SIGNING_SECRET_PREVIOUS_FILE": str(previous),
        }
    )
    assert s.signing_secrets == (SECRET, "q" * 40)
    with pytest.raises(ConfigError, match=r"^JOBS_SIGNING_SECRET: expected either"):
        load_settings({**BASE, "JOBS_SIGNING_SECRET_FILE": str(current)})
    insecure = load_settings({"HOSTNAME": "pod-1", "JOBS_INSECURE_CALLBACKS": "true"})
    assert (insecure.insecure_callbacks, insecure.signing_secrets) == (True, ())
    # The scheduler alone neither signs nor checks anything.
    alone = load_settings(
        {
            "HOSTNAME": "pod-1",
            "JOBS_WORKER_ENABLED": "false",
            "JOBS_CALLBACK_SERVER_ENABLED": "false",
        }
    )
    assert alone.signing_secret is None


def test_each_default_is_shown_from_the_one_it_falls_back_to() -> None:
    from jobservice.config import Settings

    defaults = {var.name: var.default for var in VARIABLES}
    s = load_settings(BASE)
    assert defaults["JOBS_CONCURRENCY"] == str(Settings().concurrency) == str(s.concurrency)
    assert defaults["JOBS_SETTLE_DELAY_MS"] == f"{s.settle_delay * 1000:g}"
    assert defaults["JOBS_HISTORY_RETENTION"] == "7d"
    assert s.history_retention == 7 * 86400
    assert defaults["JOBS_INSECURE_CALLBACKS"] == "false"
    assert s.callback_url == Settings().callback_url


def test_config_errors_are_the_shared_environment_error() -> None:
    from jobfn.env import EnvError

    with pytest.raises(EnvError, match=r"^JOBS_CONCURRENCY: expected an integer from 1 to 10000"):
        load_settings({**BASE, "JOBS_CONCURRENCY": "many"})
