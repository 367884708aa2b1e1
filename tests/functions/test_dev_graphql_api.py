"""The development GraphQL API: demo rows from PostgreSQL, answered only for its Host."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
import pytest

from devstack.graphql_api import DEMO_USER_ID
from devstack.stack import DEMO_DATABASE_ID
from send_verification_link.graphql import GET_DATABASE_INFO, GET_USER

if TYPE_CHECKING:
    from tests.functions.conftest import Serve, SmtpSink


class DevApi:
    def __init__(self, conninfo: str, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "devstack.graphql_api",
                    "--database-url",
                    conninfo,
                    "--port",
                    str(port),
                    "--allowed-host",
                    "localhost",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"graphql_api exited: {log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"graphql_api did not start: {log.read_text()}")
            time.sleep(0.05)  # no event to await: poll the port with a bounded deadline

    def post(self, body: dict[str, Any], host: str = "localhost") -> httpx.Response:
        return httpx.post(self.url, json=body, headers={"Host": host}, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dev_api(db_conninfo: str, tmp_path: Path) -> Iterator[DevApi]:
    """``python -m devstack.graphql_api`` on this test's database (Host ``localhost``)."""
    api = DevApi(db_conninfo, _free_port(), tmp_path / "graphql_api.log")
    try:
        yield api
    finally:
        api.stop()


def database_info(database_id: str) -> dict[str, Any]:
    return {
        "query": GET_DATABASE_INFO,
        "operationName": "GetDatabaseInfo",
        "variables": {"databaseId": database_id},
    }


def get_user(user_id: str) -> dict[str, Any]:
    return {"query": GET_USER, "operationName": "GetUser", "variables": {"userId": user_id}}


def test_answers_get_database_info_from_the_demo_rows(dev_api: DevApi) -> None:
    response = dev_api.post(database_info(DEMO_DATABASE_ID))

    assert response.status_code == 200
    [site] = response.json()["data"]["databases"]["nodes"][0]["sites"]["nodes"]
    assert site["domains"]["nodes"] == [{"subdomain": None, "domain": "localhost"}]
    assert site["siteThemes"]["nodes"] == [{"theme": {"primary": "#335C67"}}]
    [legal] = site["siteModules"]["nodes"]
    assert legal["data"]["emails"]["support"] == "support@localhost.test"
    assert legal["data"]["company"]["nick"] == "Demo"


def test_answers_get_user_from_the_table_as_it_is_now(dev_api: DevApi, db_conninfo: str) -> None:
    first = dev_api.post(get_user(DEMO_USER_ID)).json()
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute(
            "UPDATE devstack.users SET display_name = 'Renamed' WHERE id = %s", (DEMO_USER_ID,)
        )
    second = dev_api.post(get_user(DEMO_USER_ID)).json()

    assert first == {
        "data": {
            "users": {
                "nodes": [
                    {"username": "demo", "displayName": "Demo Sender", "profilePicture": None}
                ]
            }
        }
    }
    assert second["data"]["users"]["nodes"][0]["displayName"] == "Renamed"


def test_an_unknown_database_has_no_nodes(dev_api: DevApi) -> None:
    response = dev_api.post(database_info("00000000-0000-4000-8000-000000000009"))

    assert response.json() == {"data": {"databases": {"nodes": []}}}


def test_other_hosts_get_404(dev_api: DevApi) -> None:
    response = dev_api.post(database_info(DEMO_DATABASE_ID), host="other.example.test")

    assert response.status_code == 404
    assert response.json()["errors"][0]["message"] == (
        "No API is configured for host 'other.example.test'"
    )


def test_malformed_requests_get_graphql_errors(dev_api: DevApi) -> None:
    unknown = dev_api.post({"query": "query Other { x }", "operationName": "Other"})
    bad_id = dev_api.post(database_info("not-a-uuid"))
    not_json = httpx.post(
        dev_api.url, content=b"{", headers={"Host": "localhost", "Content-Type": "application/json"}
    )

    assert unknown.status_code == 400
    assert "GetDatabaseInfo and GetUser" in unknown.json()["errors"][0]["message"]
    assert bad_id.status_code == 200
    assert "data" not in bad_id.json()
    assert '"$databaseId" got invalid value "not-a-uuid"' in bad_id.json()["errors"][0]["message"]
    assert not_json.status_code == 400


def test_the_function_against_the_dev_api_sends_a_real_invite(
    dev_api: DevApi, serve: Serve, smtp_env: dict[str, str], smtp: SmtpSink
) -> None:
    env = {
        **smtp_env,
        "GRAPHQL_URL": dev_api.url,
        "GRAPHQL_HOST_HEADER": "localhost",
        "META_GRAPHQL_HOST_HEADER": "localhost",
        "LOCAL_APP_PORT": "3000",
    }
    fn = serve("send_verification_link", env)
    reply = fn.post(
        {
            "email_type": "invite_email",
            "email": "new@example.com",
            "invite_token": "invite-token-123",
            "sender_id": DEMO_USER_ID,
        },
        task="email:send_verification_link",
        database_id=DEMO_DATABASE_ID,
    )

    assert reply.status == 200, reply.body
    [(_, message)] = smtp.messages
    assert message["Subject"] == "Demo Sender invited you to Demo!"
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[attr-defined]
    assert (
        "http://localhost:3000/register?invite_token=invite-token-123&amp;"
        "email=new%40example.com&amp;type=app"
    ) in html


def test_the_function_with_the_wrong_host_fails_for_good(
    dev_api: DevApi, serve: Serve, smtp_env: dict[str, str]
) -> None:
    env = {**smtp_env, "GRAPHQL_URL": dev_api.url, "GRAPHQL_HOST_HEADER": "wrong.example.test"}
    fn = serve("send_verification_link", env)
    reply = fn.post(
        {
            "email_type": "forgot_password",
            "email": "a@example.com",
            "user_id": "u",
            "reset_token": "r",
        },
        task="email:send_verification_link",
        database_id=DEMO_DATABASE_ID,
    )

    assert reply.permanent
    assert "HTTP 404" in reply.error
