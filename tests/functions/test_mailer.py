"""The shared mailer: settings from the environment, checks on every message, masking in logs.

Pure checks first, then hostile messages through ``mailer.send`` to a stand-in Mailgun and a
real SMTP server, then through the real simple-email function (``jobfn serve``).
"""

from __future__ import annotations

import unicodedata
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mailer
from mailer import ConfigurationError, InvalidMessageError, Message, check_address
from mailer.mailgun import dev_recipient, form_fields
from mailer.smtp import mime_message

if TYPE_CHECKING:
    from tests.functions.conftest import FunctionProcess, Serve, SmtpSink, StandInMailgun


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


# -- hostile input: line breaks, smuggled recipients, unbuildable messages --------------------

HEADER_FIELDS = ["to", "subject", "sender", "reply_to"]
FIELD_NAMES = {"to": "to", "subject": "subject", "sender": "from", "reply_to": "replyTo"}


@pytest.mark.parametrize("field", HEADER_FIELDS)
@pytest.mark.parametrize("brk", list(mailer.LINE_BREAKS), ids=lambda c: f"U+{ord(c):04X}")
def test_every_unicode_line_break_is_refused_in_every_header(field: str, brk: str) -> None:
    values: dict[str, str] = {"to": "a@example.com", "subject": "s", "text": "body"}
    values[field] = f"x@example.com{brk}Bcc: victim@example.com"

    with pytest.raises(InvalidMessageError) as caught:
        Message.build(**values)

    assert str(caught.value).startswith(f"Field '{FIELD_NAMES[field]}' must not contain line")


@given(
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(sorted(mailer.LINE_BREAKS + "\x00\x07\x1b\x7f\x9b")),
    st.text(st.characters(codec="utf-8"), max_size=30),
)
def test_no_header_value_with_a_line_break_or_control_character_passes(
    before: str, bad: str, after: str
) -> None:
    with pytest.raises(InvalidMessageError, match="Field 'subject' must not contain"):
        mailer.check_header("subject", before + bad + after)


@given(st.text(max_size=60))
def test_a_header_value_that_passes_is_one_line_of_printable_text(value: str) -> None:
    try:
        mailer.check_header("subject", value)
    except InvalidMessageError:
        return
    assert len(value.splitlines()) <= 1
    assert value == "" or value.splitlines()[0] == value
    assert all(ch == "\t" or unicodedata.category(ch) not in {"Cc", "Cs"} for ch in value)


@pytest.mark.parametrize(
    "value",
    [
        "a@example.com, victim@example.com",
        "a@example.com,victim@example.com",
        "a@example.com; victim@example.com",
        "Name <a@example.com>, victim@example.com",
        "team: a@example.com, victim@example.com;",
        "a@example.com victim@example.com",
        "a@example.com <victim@example.com>",
        "<a@example.com> <victim@example.com>",
        '"x" <a@example.com>, "y" <victim@example.com>',
    ],
)
@pytest.mark.parametrize("field", ["to", "sender", "reply_to"])
def test_a_list_smuggled_into_one_address_value_is_refused(field: str, value: str) -> None:
    values: dict[str, str] = {"to": "a@example.com", "subject": "s", "text": "body"}
    values[field] = value

    with pytest.raises(InvalidMessageError) as caught:
        Message.build(**values)

    assert f"Field '{FIELD_NAMES[field]}' must hold exactly one email address" in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        "a@example.com",
        "  a@example.com  ",
        "Jane Doe <jane@example.com>",
        '"Doe, Jane" <jane@example.com>',
        '"Jane \\"JD\\" Doe" <jane@example.com>',
        "<jane@example.com>",
        "Zoë <zoe@example.com>",
        "first.last+tag@sub.example.co.uk",
    ],
)
def test_one_address_in_the_usual_forms_is_accepted(value: str) -> None:
    message = Message.build(to=value, subject="s", text="t", reply_to=value, sender=value)

    assert message.to == (value.strip(),)
    assert message.reply_to == value.strip()


def test_several_recipients_are_several_values() -> None:
    message = Message.build(to=["a@example.com", '"Doe, J" <j@example.com>'], subject="s", text="t")

    assert message.to == ("a@example.com", '"Doe, J" <j@example.com>')


@settings(max_examples=300)
@given(st.text(st.characters(codec="utf-8"), max_size=40))
def test_what_check_address_accepts_is_exactly_one_address_to_the_email_package(
    value: str,
) -> None:
    try:
        accepted = check_address("to", value)
    except InvalidMessageError:
        return
    header = EmailMessage()
    header["To"] = accepted
    assert len(header["To"].addresses) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("text", "a\x00b"), ("html", "<p>\ud800</p>"), ("subject", "s\udfff"), ("to", "\ud83d@x.y")],
)
def test_text_that_is_not_valid_unicode_is_refused(field: str, value: str) -> None:
    values: dict[str, str] = {"to": "a@example.com", "subject": "s", "text": "body"}
    values[field] = value

    with pytest.raises(InvalidMessageError, match=f"Field '{field}'"):
        Message.build(**values)


@settings(max_examples=150)
@given(
    subject=st.text(max_size=80),
    text=st.one_of(st.none(), st.text(max_size=200)),
    html=st.one_of(st.none(), st.text(max_size=200)),
    to=st.one_of(st.sampled_from(["a@example.com", '"Doe, J" <j@x.test>']), st.text(max_size=40)),
)
def test_any_message_either_builds_completely_or_is_refused_as_invalid(
    subject: str, text: str | None, html: str | None, to: str
) -> None:
    try:
        message = Message.build(to=[to, "b@example.com"], subject=subject, text=text, html=html)
    except InvalidMessageError:
        return  # refused as a whole (never retryable: InvalidMessageError.retryable is False)
    mime = mime_message(message, "Jobs <jobs@example.com>")
    assert mime["Subject"] == subject
    assert len(mime["To"].addresses) == 2
    fields = dict(
        form_fields(message, mailer.MailgunSettings("k", "mg.example.test", sender="j@x.y"))
    )
    assert fields["to"] == f"{message.to[0]},b@example.com"


def test_a_message_constructed_without_build_is_checked_before_sending(
    mailgun: StandInMailgun, smtp: SmtpSink
) -> None:
    smuggled = Message(to=("a@example.com, victim@example.com",), subject="s", text="t")
    injected = Message(to=("a@example.com",), subject="s\u2028Bcc: victim@example.com", text="t")
    via_mailgun = mailer.MailgunSettings(
        "k", "mg.example.test", api_url=mailgun.url, sender="j@x.y"
    )
    via_smtp = mailer.SmtpSettings("127.0.0.1", smtp.port, sender="j@x.y", timeout=5)

    for message in (smuggled, injected):
        for settings_ in (via_mailgun, via_smtp):
            with pytest.raises(InvalidMessageError) as caught:
                mailer.send(message, settings_)
            assert not caught.value.retryable

    assert mailgun.sent == []
    assert smtp.messages == []


# -- through the real simple-email function -------------------------------------------------

TASK = "simple-email"
DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
GOOD = {"to": "user@example.com", "subject": "Hello", "text": "Hi"}


@pytest.fixture(scope="module")
def simple_email(serve: Serve, mailgun_env: dict[str, str]) -> FunctionProcess:
    return serve("simple_email", mailgun_env)


@pytest.fixture(scope="module")
def simple_email_smtp(serve: Serve, smtp_env: dict[str, str]) -> FunctionProcess:
    return serve("simple_email", smtp_env)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("to", "user@example.com, victim@example.com", "Field 'to' must hold exactly one"),
        ("to", ["user@example.com", "a@x.test; victim@example.com"], "Field 'to' must hold"),
        ("replyTo", "team: a@x.test, b@x.test;", "Field 'replyTo' must hold exactly one"),
        ("from", "a@x.test <victim@example.com>", "Field 'from' must hold exactly one"),
        ("subject", "Hi\u2028Bcc: victim@example.com", "Field 'subject' must not contain line"),
        ("subject", "Hi\x85Bcc: victim@example.com", "Field 'subject' must not contain line"),
        ("to", "user@example.com\x0bBcc: v@example.com", "Field 'to' must not contain line"),
        ("text", "a\x00b", "Field 'text' must not contain NUL"),
    ],
)
def test_the_function_fails_a_hostile_message_for_good_and_sends_nothing(
    *,
    simple_email: FunctionProcess,
    simple_email_smtp: FunctionProcess,
    mailgun: StandInMailgun,
    smtp: SmtpSink,
    field: str,
    value: object,
    says: str,
) -> None:
    for function in (simple_email, simple_email_smtp):
        reply = function.post({**GOOD, field: value}, task=TASK, database_id=DB)

        assert reply.permanent, (reply.status, reply.body)
        assert says in reply.error

    assert mailgun.sent == []
    assert smtp.messages == []


def test_the_function_still_sends_to_several_recipients_given_as_a_list(
    simple_email: FunctionProcess, mailgun: StandInMailgun
) -> None:
    reply = simple_email.post(
        {**GOOD, "to": ["a@example.com", '"Doe, J" <j@example.com>']}, task=TASK, database_id=DB
    )

    assert reply.status == 200, reply.body
    [request] = mailgun.sent
    assert request.form()["to"] == 'a@example.com,"Doe, J" <j@example.com>'


# -- masking secrets in logs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "masked"),
    [
        (
            "https://app.example.com/reset-password?role_id=u1&reset_token=r1",
            "https://app.example.com/reset-password?role_id=u1&reset_token=***",
        ),
        (
            "https://acme.example.com/register?invite_token=abc%2Fdef&email=a%40b.c&type=org",
            "https://acme.example.com/register?invite_token=***&email=a%40b.c&type=org",
        ),
        (
            "http://localhost:3000/verify-email?email_id=e1&verification_token=t1",
            "http://localhost:3000/verify-email?email_id=e1&verification_token=***",
        ),
        (
            "https://u:secret@x.test/cb?code=1#access_token=z&state=s",
            "https://***@x.test/cb?code=***#access_token=***&state=s",
        ),
        ("https://x.test/plain/path", "https://x.test/plain/path"),
        ("not a link", "not a link"),
    ],
)
def test_mask_link_hides_token_values_and_keeps_the_shape(link: str, masked: str) -> None:
    assert mailer.mask_link(link) == masked


def test_mask_links_hides_every_link_in_a_text() -> None:
    text = (
        "Reset: https://a.test/reset?reset_token=T0K3N. Or invite "
        "(https://b.test/register?invite_token=INV&email=x%40y.z), bye"
    )

    masked = mailer.mask_links(text)

    assert "T0K3N" not in masked
    assert "INV" not in masked
    assert masked.endswith("invite (https://b.test/register?invite_token=***&email=x%40y.z), bye")


@pytest.mark.parametrize(
    ("recipient", "redirected"),
    [
        ("x@y.test", "me+x_at_y.test@dev.test"),
        ("Name <x@y.test>", "me+x_at_y.test@dev.test"),
        ('"a<b>, c" <x@y.test>', "me+x_at_y.test@dev.test"),
    ],
)
def test_the_dev_redirect_uses_the_address_whatever_the_name(
    recipient: str, redirected: str
) -> None:
    assert dev_recipient(check_address("to", recipient), "Dev <me@dev.test>") == redirected


@given(
    name=st.sampled_from(["invite_token", "reset_token", "verification_token", "code", "api_key"]),
    secret=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=6),
    other=st.text(st.characters(codec="ascii", categories=["Ll"]), max_size=8),
)
def test_no_secret_parameter_value_survives_masking(name: str, secret: str, other: str) -> None:
    link = "https://app.test/verify?" + urlencode([("email_id", other), (name, secret)])

    masked = mailer.mask_link(link)

    assert masked == f"https://app.test/verify?email_id={quote_plus(other)}&{name}=***"
