"""send-verification-link over HTTP: ``jobfn serve send_verification_link`` with job headers,
against a stand-in GraphQL API and a stand-in Mailgun (or a real SMTP server)."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from graphql import parse, print_ast

from send_verification_link.graphql import GET_DATABASE_INFO, GET_USER

if TYPE_CHECKING:
    from tests.functions.conftest import (
        FunctionProcess,
        Serve,
        SmtpSink,
        StandInGraphQL,
        StandInMailgun,
    )

TASK = "email:send_verification_link"
DB = "5b720132-17d5-424d-9bcb-ee7b17c13d43"
SENDER = "9a5b1e3c-7d42-4c8e-b1f0-2e6d8c4a7b19"
TOKEN = "graphql-token-1"

INVITE = {
    "email_type": "invite_email",
    "email": "invitee@example.com",
    "invite_token": "inv-123",
    "sender_id": SENDER,
}
RESET = {
    "email_type": "forgot_password",
    "email": "user@example.com",
    "user_id": "u1",
    "reset_token": "r1",
}
VERIFY = {
    "email_type": "email_verification",
    "email": "user@example.com",
    "email_id": "e1",
    "verification_token": "verify-123",
}


def site(
    *,
    subdomain: str | None = "app",
    domain: str = "example.com",
    primary: str = "#335C67",
    support: str = "support@acme.test",
) -> dict[str, Any]:
    """A site node as GetDatabaseInfo returns it."""
    return {
        "domains": {"nodes": [{"subdomain": subdomain, "domain": domain}]},
        "logo": {"url": "https://cdn.acme.test/logo.png"},
        "title": "Acme App",
        "siteThemes": {"nodes": [{"theme": {"primary": primary}}]},
        "siteModules": {
            "nodes": [
                {
                    "data": {
                        "emails": {"support": support},
                        "company": {
                            "name": "Acme, Inc.",
                            "nick": "Acme",
                            "website": "https://acme.test",
                        },
                    }
                }
            ]
        },
    }


@pytest.fixture(scope="module")
def graphql_env(graphql_server: StandInGraphQL) -> dict[str, str]:
    return {
        "GRAPHQL_URL": f"{graphql_server.url}/tenant/graphql",
        "META_GRAPHQL_URL": f"{graphql_server.url}/meta/graphql",
        "GRAPHQL_HOST_HEADER": "tenant.example.test",
        "META_GRAPHQL_HOST_HEADER": "meta.example.test",
        "GRAPHQL_AUTH_TOKEN": TOKEN,
        "GRAPHQL_API_NAME": "private",
        "GRAPHQL_SCHEMATA": "app_public",
        "GRAPHQL_TIMEOUT": "1",
        "LOCAL_APP_PORT": "3000",
    }


@pytest.fixture(scope="module")
def via_mailgun(
    serve: Serve, graphql_env: dict[str, str], mailgun_env: dict[str, str]
) -> FunctionProcess:
    return serve("send_verification_link", {**graphql_env, **mailgun_env})


@pytest.fixture
def fn(
    via_mailgun: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> FunctionProcess:
    """The function sending through Mailgun, with the demo site and sender known."""
    graphql.sites[DB] = site()
    graphql.users[SENDER] = {"username": "ada", "displayName": "Ada", "profilePicture": None}
    return via_mailgun


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def hrefs(html: str) -> list[str]:
    """Every ``<a href>`` of ``html``, unescaped."""
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def sent_form(mailgun: StandInMailgun) -> dict[str, str]:
    [request] = mailgun.sent
    return request.form()


# -- each email type, end to end ---------------------------------------------------------


def test_invite_email_queries_both_endpoints_with_their_headers_and_sends(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    reply = fn.post(INVITE, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    assert reply.body["complete"] is True
    [meta] = graphql.of("GetDatabaseInfo")
    assert meta.path == "/meta/graphql"
    assert meta.headers["host"] == "meta.example.test"
    assert meta.headers["x-meta-schema"] == "true"
    assert meta.headers["authorization"] == f"Bearer {TOKEN}"
    assert meta.json()["variables"] == {"databaseId": DB}
    [tenant] = graphql.of("GetUser")
    assert tenant.path == "/tenant/graphql"
    assert tenant.headers["host"] == "tenant.example.test"
    assert tenant.headers["x-database-id"] == DB
    assert tenant.headers["authorization"] == f"Bearer {TOKEN}"
    assert tenant.headers["x-api-name"] == "private"
    assert tenant.headers["x-schemata"] == "app_public"
    assert tenant.json()["variables"] == {"userId": SENDER}

    [request] = mailgun.sent
    assert request.basic_auth == ("api", "key-stand-in-123")
    form = request.form()
    assert form["to"] == "invitee@example.com"
    assert form["subject"] == "Ada invited you to Acme!"
    link = (
        "https://app.example.com/register?invite_token=inv-123&email=invitee%40example.com&type=app"
    )
    assert link in hrefs(form["html"])
    assert "mailto:support@acme.test" in hrefs(form["html"])
    assert "support@acme.test" in form["html"]
    assert "background:#335C67" in form["html"]
    assert "You&#39;ve been invited to Acme" in form["html"]
    assert "Join Us" in form["html"]
    assert link in form["text"]


def test_the_queries_are_the_reference_documents(
    fn: FunctionProcess, graphql: StandInGraphQL
) -> None:
    fn.post(INVITE, task=TASK, database_id=DB)

    [meta] = graphql.of("GetDatabaseInfo")
    [tenant] = graphql.of("GetUser")
    assert print_ast(parse(meta.json()["query"])) == print_ast(parse(GET_DATABASE_INFO))
    assert print_ast(parse(tenant.json()["query"])) == print_ast(parse(GET_USER))
    assert meta.json()["operationName"] == "GetDatabaseInfo"
    assert tenant.json()["operationName"] == "GetUser"
    assert 'equalTo: "legal_terms_module"' in meta.json()["query"]


def test_forgot_password_link_and_subject(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    assert graphql.of("GetUser") == []
    form = sent_form(mailgun)
    assert form["subject"] == "Acme Password Reset Request"
    assert "https://app.example.com/reset-password?role_id=u1&reset_token=r1" in hrefs(form["html"])
    assert "Click below to reset your password" in form["html"]


def test_email_verification_on_a_local_domain_uses_local_app_port(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    graphql.sites[DB] = site(subdomain="app", domain="localhost")
    reply = fn.post(VERIFY, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    form = sent_form(mailgun)
    assert form["subject"] == "Acme Email Verification"
    assert "http://localhost:3000/verify-email?email_id=e1&verification_token=verify-123" in (
        hrefs(form["html"])
    )
    assert "Confirm Email" in form["html"]


def test_org_invite_with_characters_that_need_encoding(
    fn: FunctionProcess, mailgun: StandInMailgun
) -> None:
    payload = {**INVITE, "invite_token": "tok/+=", "email": "a+b@example.com", "invite_type": 2}
    reply = fn.post(payload, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    link = "https://app.example.com/register?invite_token=tok%2F%2B%3D&email=a%2Bb%40example.com&type=org"
    assert link in hrefs(sent_form(mailgun)["html"])


def test_invite_without_a_display_name_says_welcome(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    graphql.users.clear()
    reply = fn.post(INVITE, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    assert sent_form(mailgun)["subject"] == "Welcome to Acme!"


def test_a_script_display_name_arrives_escaped(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    graphql.users[SENDER] = {"username": "x", "displayName": "<script>alert(1)</script>"}
    reply = fn.post(INVITE, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    form = sent_form(mailgun)
    assert form["subject"] == "<script>alert(1)</script> invited you to Acme!"
    assert "&lt;script&gt;alert(1)&lt;/script&gt; invited you to Acme!" in form["html"]
    assert "<script" not in form["html"].lower()


def test_an_unsafe_theme_colour_falls_back_to_the_default(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    graphql.sites[DB] = site(primary='red;background:url("https://evil.test/x")')
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    html = sent_form(mailgun)["html"]
    assert "evil.test" not in html
    assert "background:#414141" in html


def test_database_id_falls_back_to_default_database_id(
    serve: Serve,
    graphql_env: dict[str, str],
    mailgun_env: dict[str, str],
    graphql: StandInGraphQL,
    mailgun: StandInMailgun,
) -> None:
    graphql.sites[DB] = site()
    fn = serve("send_verification_link", {**graphql_env, **mailgun_env, "DEFAULT_DATABASE_ID": DB})
    reply = fn.post(RESET, task=TASK, database_id=None)

    assert reply.status == 200, reply.body
    assert graphql.of("GetDatabaseInfo")[0].json()["variables"] == {"databaseId": DB}


# -- permanent failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "missing"),
    [
        ({"email": "a@example.com"}, "email_type"),
        ({"email_type": "invite_email"}, "email"),
        ({"email_type": "bogus", "email": "a@example.com"}, "email_type"),
        (
            {"email_type": "invite_email", "email": "a@example.com", "invite_token": "t"},
            "invite_token_or_sender_id",
        ),
        ({"email_type": "forgot_password", "email": "a@example.com"}, "user_id_or_reset_token"),
        (
            {"email_type": "email_verification", "email": "a@example.com", "email_id": "e"},
            "email_id_or_verification_token",
        ),
    ],
)
def test_missing_fields_fail_for_good_before_any_query(
    fn: FunctionProcess,
    graphql: StandInGraphQL,
    mailgun: StandInMailgun,
    payload: dict[str, str],
    missing: str,
) -> None:
    reply = fn.post(payload, task=TASK, database_id=DB)

    assert reply.permanent
    assert reply.error == f"Missing required field: {missing}"
    assert graphql.requests == []
    assert mailgun.sent == []


def test_no_database_id_fails_for_good(fn: FunctionProcess, graphql: StandInGraphQL) -> None:
    reply = fn.post(RESET, task=TASK, database_id=None)

    assert reply.permanent
    assert reply.error == "Missing X-Database-Id header or DEFAULT_DATABASE_ID"
    assert graphql.requests == []


def test_unknown_database_fails_for_good(fn: FunctionProcess, mailgun: StandInMailgun) -> None:
    reply = fn.post(RESET, task=TASK, database_id="00000000-0000-4000-8000-000000000001")

    assert reply.permanent
    assert reply.error == "Site not found for database"
    assert mailgun.sent == []


def test_missing_site_configuration_fails_for_good_naming_it(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    incomplete = site()
    incomplete["siteThemes"] = {"nodes": []}
    incomplete["siteModules"] = {"nodes": []}
    graphql.sites[DB] = incomplete
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.permanent
    assert reply.error.startswith("Missing site configuration for email")
    assert "siteThemes" in reply.error
    assert "legal_terms_module" in reply.error
    assert mailgun.sent == []


@pytest.mark.parametrize("domain", ["evil.test/phish?x=", "exa mple.com", "a..b", "-x.com"])
def test_a_domain_that_is_not_a_host_name_is_refused(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun, domain: str
) -> None:
    graphql.sites[DB] = site(subdomain=None, domain=domain)
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.permanent
    assert "is not a valid host name" in reply.error
    assert mailgun.sent == []


def test_line_breaks_from_the_display_name_never_reach_a_header(
    fn: FunctionProcess, graphql: StandInGraphQL, mailgun: StandInMailgun
) -> None:
    graphql.users[SENDER] = {"username": "x", "displayName": "Eve\r\nBcc: victim@example.com"}
    reply = fn.post(INVITE, task=TASK, database_id=DB)

    assert reply.permanent
    assert "line breaks" in reply.error
    assert mailgun.sent == []


def test_graphql_refusing_the_host_fails_for_good(
    fn: FunctionProcess, graphql: StandInGraphQL
) -> None:
    graphql.status = 404
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.permanent
    assert "HTTP 404" in reply.error
    assert "meta.example.test" in reply.error


# -- retryable failures ------------------------------------------------------------------


def test_graphql_server_error_is_retryable(fn: FunctionProcess, graphql: StandInGraphQL) -> None:
    graphql.status = 500
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.retryable
    assert "GraphQL GetDatabaseInfo" in reply.error
    assert "HTTP 500" in reply.error


def test_graphql_that_does_not_answer_times_out_and_is_retryable(
    fn: FunctionProcess, graphql: StandInGraphQL
) -> None:
    graphql.hang = True
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.retryable
    assert "did not answer within 1 s" in reply.error


def test_mailgun_server_error_is_retryable(fn: FunctionProcess, mailgun: StandInMailgun) -> None:
    mailgun.status = 502
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.retryable
    assert "Mailgun answered HTTP 502" in reply.error


# -- dry run, SMTP, configuration ------------------------------------------------------


def test_dry_run_logs_the_link_and_sends_nothing(
    serve: Serve,
    graphql_env: dict[str, str],
    mailgun_env: dict[str, str],
    graphql: StandInGraphQL,
    mailgun: StandInMailgun,
) -> None:
    graphql.sites[DB] = site()
    fn = serve(
        "send_verification_link",
        {**graphql_env, **mailgun_env, "SEND_VERIFICATION_LINK_DRY_RUN": "true"},
    )
    reply = fn.post(RESET, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    assert reply.body == {"complete": True, "result": {"dryRun": True}}
    assert mailgun.sent == []
    line = json.loads(fn.wait_for_line("DRY RUN email (skipping send)"))
    assert line["email"] == {
        "email_type": "forgot_password",
        "email": "user@example.com",
        "subject": "Acme Password Reset Request",
        "link": "https://app.example.com/reset-password?role_id=u1&reset_token=***",
    }
    assert "reset_token=r1" not in fn.output  # the token is never logged


def test_sends_by_smtp_to_a_real_smtp_server(
    serve: Serve,
    graphql_env: dict[str, str],
    smtp_env: dict[str, str],
    graphql: StandInGraphQL,
    smtp: SmtpSink,
) -> None:
    graphql.sites[DB] = site()
    fn = serve("send_verification_link", {**graphql_env, **smtp_env})
    reply = fn.post(VERIFY, task=TASK, database_id=DB)

    assert reply.status == 200, reply.body
    [(envelope, message)] = smtp.messages
    assert envelope.rcpt_tos == ["user@example.com"]
    assert message["Subject"] == "Acme Email Verification"
    html_part = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    html = html_part.get_content()
    assert "https://app.example.com/verify-email?email_id=e1&verification_token=verify-123" in (
        hrefs(html)
    )
    assert "support@acme.test" in html


def test_missing_graphql_url_stops_start_up_naming_it(mailgun_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "jobfn"), "serve", "send_verification_link"],
        env=mailgun_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "Missing required environment variable GRAPHQL_URL" in line
