"""simple-email over HTTP: ``jobfn serve simple_email`` with a worker's job headers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.functions.conftest import (
        FunctionProcess,
        Serve,
        SmtpSink,
        StandInMailgun,
    )

TASK = "simple-email"
DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
PAYLOAD = {"to": "user@example.com", "subject": "Hello", "html": "<p>Hi</p>", "text": "Hi"}


@pytest.fixture(scope="module")
def via_mailgun(serve: Serve, mailgun_env: dict[str, str]) -> FunctionProcess:
    return serve("simple_email", mailgun_env)


@pytest.fixture(scope="module")
def dry_run(serve: Serve, mailgun_env: dict[str, str]) -> FunctionProcess:
    return serve("simple_email", {**mailgun_env, "SIMPLE_EMAIL_DRY_RUN": "true"})


@pytest.fixture(scope="module")
def via_smtp(serve: Serve, smtp_env: dict[str, str]) -> FunctionProcess:
    return serve("simple_email", smtp_env)


def test_sends_through_mailgun_with_the_form_and_basic_auth(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun
) -> None:
    reply = via_mailgun.post(PAYLOAD, task=TASK, database_id=DB)

    assert reply.status == 200
    assert reply.body == {"complete": True, "result": {"messageId": "<1@stand-in>"}}
    [request] = mailgun.sent
    assert request.path == "/v3/mg.example.test/messages"
    assert request.basic_auth == ("api", "key-stand-in-123")
    assert request.form() == {
        "from": "Jobs <jobs@example.test>",
        "to": "user@example.com",
        "subject": "Hello",
        "html": "<p>Hi</p>",
        "text": "Hi",
        "h:Reply-To": "help@example.test",
    }


def test_payload_from_and_reply_to_override_the_defaults(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun
) -> None:
    payload = {
        "to": "user@example.com",
        "subject": "Hi",
        "text": "plain text body",
        "from": "Sales <sales@example.test>",
        "replyTo": "answers@example.test",
    }
    reply = via_mailgun.post(payload, task=TASK, database_id=DB)

    assert reply.status == 200
    form = mailgun.sent[0].form()
    assert form["from"] == "Sales <sales@example.test>"
    assert form["h:Reply-To"] == "answers@example.test"
    assert "html" not in form
    assert form["text"] == "plain text body"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"subject": "s", "text": "t"}, "Missing required field 'to'"),
        ({"to": "   ", "subject": "s", "text": "t"}, "Missing required field 'to'"),
        ({"to": "a@example.com", "text": "t"}, "Missing required field 'subject'"),
        ({"to": "a@example.com", "subject": "s"}, "Either 'html' or 'text' must be provided"),
        (
            {"to": "a@example.com", "subject": "s", "html": "", "text": ""},
            "Either 'html' or 'text' must be provided",
        ),
    ],
)
def test_missing_fields_fail_for_good_and_send_nothing(
    via_mailgun: FunctionProcess,
    mailgun: StandInMailgun,
    payload: dict[str, str],
    message: str,
) -> None:
    reply = via_mailgun.post(payload, task=TASK, database_id=DB)

    assert reply.permanent
    assert reply.error == message
    assert mailgun.sent == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Hi\r\nBcc: victim@example.com"),
        ("to", "user@example.com\nBcc: victim@example.com"),
        ("from", "a@example.com\r\nX-Evil: 1"),
        ("replyTo", "b@example.com\rX-Evil: 1"),
    ],
)
def test_line_breaks_in_header_fields_are_refused(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun, field: str, value: str
) -> None:
    reply = via_mailgun.post({**PAYLOAD, field: value}, task=TASK, database_id=DB)

    assert reply.permanent
    assert f"Field '{field}' must not contain line breaks" in reply.error
    assert mailgun.sent == []


def test_mailgun_server_error_is_retryable(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun
) -> None:
    mailgun.status = 503
    reply = via_mailgun.post(PAYLOAD, task=TASK, database_id=DB)

    assert reply.retryable
    assert "Mailgun answered HTTP 503: stand-in failure 503" in reply.error


def test_mailgun_client_error_fails_for_good(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun
) -> None:
    mailgun.status = 400
    reply = via_mailgun.post(PAYLOAD, task=TASK, database_id=DB)

    assert reply.permanent
    assert reply.error == "Mailgun refused the message (HTTP 400): stand-in failure 400"


def test_a_bad_mailgun_key_fails_for_good_naming_the_variable(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun
) -> None:
    mailgun.status = 401
    reply = via_mailgun.post(PAYLOAD, task=TASK, database_id=DB)

    assert reply.permanent
    assert "MAILGUN_API_KEY" in reply.error


def test_mailgun_that_does_not_answer_times_out_and_is_retryable(
    via_mailgun: FunctionProcess, mailgun: StandInMailgun
) -> None:
    mailgun.hang = True
    reply = via_mailgun.post(PAYLOAD, task=TASK, database_id=DB)

    assert reply.retryable
    assert "Mailgun did not answer within 1 s" in reply.error


def test_dry_run_logs_and_completes_without_sending(
    dry_run: FunctionProcess, mailgun: StandInMailgun
) -> None:
    reply = dry_run.post(PAYLOAD, task=TASK, database_id=DB)

    assert reply.status == 200
    assert reply.body == {"complete": True, "result": {"dryRun": True}}
    assert mailgun.sent == []
    line = json.loads(dry_run.wait_for_line("DRY RUN email (no send)"))
    assert line["email"] == {
        "to": ["user@example.com"],
        "subject": "Hello",
        "from": "Jobs <jobs@example.test>",
        "replyTo": None,
        "hasHtml": True,
        "hasText": True,
    }
    assert line["job_id"] == "42"


def test_dry_run_still_validates(dry_run: FunctionProcess) -> None:
    reply = dry_run.post({"to": "user@example.com"}, task=TASK, database_id=DB)

    assert reply.permanent
    assert reply.error == "Missing required field 'subject'"


def test_sends_by_smtp_to_a_real_smtp_server(via_smtp: FunctionProcess, smtp: SmtpSink) -> None:
    reply = via_smtp.post(
        {"to": "user@example.com", "subject": "Live", "text": "plain text body"},
        task=TASK,
        database_id=DB,
    )

    assert reply.status == 200
    [(envelope, message)] = smtp.messages
    assert envelope.mail_from == "smtp-from@example.test"
    assert envelope.rcpt_tos == ["user@example.com"]
    assert message["Subject"] == "Live"
    assert message["From"] == "smtp-from@example.test"
    assert message.get_payload(decode=True).decode().strip() == "plain text body"  # type: ignore[union-attr]


def test_smtp_server_that_is_down_is_retryable(serve: Serve) -> None:
    closed_port = "1"  # nothing listens on port 1
    fn = serve(
        "simple_email",
        {"EMAIL_SEND_USE_SMTP": "true", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": closed_port},
    )
    reply = fn.post(PAYLOAD | {"from": "a@example.com"}, task=TASK, database_id=DB)

    assert reply.retryable
    assert "Could not send through SMTP server 127.0.0.1:1" in reply.error


def _start_up_error(env: dict[str, str]) -> str:
    """Run ``jobfn serve simple_email`` with ``env``; it must refuse to start: its one line."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jobfn"), "serve", "simple_email"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_mail_configuration_stops_start_up_naming_it() -> None:
    line = _start_up_error({})
    assert "MAILGUN_API_KEY: expected the Mailgun API key" in line


def test_smtp_mode_names_the_missing_smtp_host() -> None:
    line = _start_up_error({"EMAIL_SEND_USE_SMTP": "true"})
    assert "SMTP_HOST" in line
    assert "MAILGUN" not in line


def test_a_dry_run_needs_no_mail_configuration(serve: Serve) -> None:
    fn = serve("simple_email", {"SIMPLE_EMAIL_DRY_RUN": "true"})
    reply = fn.post(PAYLOAD, task=TASK, database_id=DB)
    assert reply.status == 200
    assert reply.body == {"complete": True, "result": {"dryRun": True}}


def test_a_malformed_variable_stops_start_up_with_one_line() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jobfn"), "serve", "simple_email"],
        env={"EMAIL_SEND_USE_SMTP": "true", "SMTP_HOST": "mail", "SMTP_PORT": "not-a-port"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SMTP_PORT" in lines[0]
    assert "not-a-port" in lines[0]
