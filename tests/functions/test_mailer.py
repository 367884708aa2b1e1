"""The shared mailer: settings from the environment and checks on every message (pure)."""

from __future__ import annotations

import pytest

import mailer
from mailer import ConfigurationError, InvalidMessageError, Message
from mailer.mailgun import dev_recipient, form_fields


def test_mailgun_settings_accept_either_key_name() -> None:
    base = {"MAILGUN_DOMAIN": "mg.example.test"}
    one = mailer.load_settings({**base, "MAILGUN_API_KEY": "k1"})
    other = mailer.load_settings({**base, "MAILGUN_KEY": "k2"})

    assert isinstance(one, mailer.MailgunSettings)
    assert isinstance(other, mailer.MailgunSettings)
    assert (one.api_key, other.api_key) == ("k1", "k2")
    assert one.messages_url == "https://api.mailgun.net/v3/mg.example.test/messages"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "MAILGUN_API_KEY"),
        ({"MAILGUN_API_KEY": "k"}, "MAILGUN_DOMAIN"),
        ({"MAILGUN_API_KEY": "k", "MAILGUN_DOMAIN": "https://mg.x"}, "MAILGUN_DOMAIN"),
        (
            {"MAILGUN_API_KEY": "k", "MAILGUN_DOMAIN": "d.x", "MAILGUN_API_URL": "ftp://x"},
            "MAILGUN_API_URL",
        ),
        (
            {"MAILGUN_API_KEY": "k", "MAILGUN_DOMAIN": "d.x", "MAILGUN_FROM": "nobody"},
            "MAILGUN_FROM",
        ),
        ({"EMAIL_SEND_USE_SMTP": "maybe"}, "EMAIL_SEND_USE_SMTP"),
        ({"EMAIL_SEND_USE_SMTP": "true"}, "SMTP_HOST"),
        ({"EMAIL_SEND_USE_SMTP": "1", "SMTP_HOST": "h", "SMTP_PORT": "99999"}, "SMTP_PORT"),
        ({"EMAIL_SEND_TIMEOUT": "soon"}, "EMAIL_SEND_TIMEOUT"),
    ],
)
def test_a_missing_or_malformed_variable_is_named_in_one_line(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        mailer.load_settings(environ)

    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_smtp_port_defaults_follow_the_security_mode() -> None:
    plain = mailer.load_settings({"EMAIL_SEND_USE_SMTP": "true", "SMTP_HOST": "h"})
    starttls = mailer.load_settings(
        {"EMAIL_SEND_USE_SMTP": "true", "SMTP_HOST": "h", "SMTP_STARTTLS": "true"}
    )
    tls = mailer.load_settings({"EMAIL_SEND_USE_SMTP": "true", "SMTP_HOST": "h", "SMTP_TLS": "on"})

    assert isinstance(plain, mailer.SmtpSettings)
    assert isinstance(starttls, mailer.SmtpSettings)
    assert isinstance(tls, mailer.SmtpSettings)
    assert (plain.port, starttls.port, tls.port) == (25, 587, 465)


@pytest.mark.parametrize("field", ["to", "subject", "sender", "reply_to"])
def test_line_breaks_in_any_header_field_are_refused(field: str) -> None:
    values: dict[str, str] = {"to": "a@example.com", "subject": "s", "text": "body"}
    values[field] = "x@example.com\r\nBcc: victim@example.com"

    with pytest.raises(InvalidMessageError, match="line breaks"):
        Message.build(**values)


def test_mailgun_form_uses_the_defaults_and_the_dev_redirect() -> None:
    settings = mailer.MailgunSettings(
        api_key="k",
        domain="mg.example.test",
        sender="Jobs <jobs@example.test>",
        reply_to="help@example.test",
        dev_email="dev@example.test",
    )
    message = Message.build(to=["a@b.test", "Name <c@d.test>"], subject="s", html="<p>x</p>")

    assert form_fields(message, settings) == [
        ("from", "Jobs <jobs@example.test>"),
        ("to", "dev+a_at_b.test@example.test,dev+c_at_d.test@example.test"),
        ("subject", "s"),
        ("html", "<p>x</p>"),
        ("h:Reply-To", "help@example.test"),
    ]
    assert dev_recipient("x@y.test", "me@dev.test") == "me+x_at_y.test@dev.test"


def test_sending_without_any_sender_names_the_variable() -> None:
    settings = mailer.MailgunSettings(api_key="k", domain="mg.example.test")
    message = Message.build(to="a@b.test", subject="s", text="t")

    with pytest.raises(ConfigurationError, match="MAILGUN_FROM"):
        form_fields(message, settings)
