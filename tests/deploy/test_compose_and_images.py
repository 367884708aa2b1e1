"""docker-compose.jobs.yml and the Dockerfiles it builds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.stack import DEMO_DATABASE_ID
from send_verification_link import send_verification_link
from simple_email import simple_email

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [
    "worker/Dockerfile",
    "devstack/Dockerfile",
    "functions/simple-email/Dockerfile",
    "functions/send-verification-link/Dockerfile",
]
WORKSPACE_MEMBERS = sorted(
    str(path.parent.relative_to(ROOT))
    for pattern in ("sdk", "worker", "devstack", "functions/*")
    for path in ROOT.glob(f"{pattern}/pyproject.toml")
)


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = compose["services"]
    assert isinstance(result, dict)
    return result


def test_the_stack_has_every_part(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {
        "postgres",
        "migrate",
        "jobs",
        "simple-email",
        "send-verification-link",
        "graphql",
        "mailpit",
    }


def test_every_build_context_and_dockerfile_exists(compose: dict[str, Any]) -> None:
    built = 0
    for name, service in services(compose).items():
        build = service.get("build")
        if build is None:
            assert "image" in service, name
            continue
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build["dockerfile"]).is_file(), name
        built += 1
    assert built == 5


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    stack = services(compose)

    def condition(service: str, on: str) -> str:
        return str(stack[service]["depends_on"][on]["condition"])

    assert stack["migrate"]["command"] == ["jobs", "migrate"]
    assert condition("migrate", "postgres") == "service_healthy"
    assert stack["jobs"]["command"] == ["jobs", "worker"]
    assert condition("jobs", "migrate") == "service_completed_successfully"
    assert condition("jobs", "simple-email") == "service_healthy"
    assert condition("jobs", "send-verification-link") == "service_healthy"
    assert condition("send-verification-link", "graphql") == "service_healthy"
    assert condition("graphql", "postgres") == "service_healthy"
    for name in ("simple-email", "send-verification-link"):
        assert "mailpit" in stack[name]["depends_on"]
        assert "healthcheck" in stack[name]


def test_functions_send_by_smtp_to_mailpit(compose: dict[str, Any]) -> None:
    stack = services(compose)
    mailpit_ports = {entry.split(":")[-1] for entry in stack["mailpit"]["ports"]}

    for name in ("simple-email", "send-verification-link"):
        env = stack[name]["environment"]
        assert env["EMAIL_SEND_USE_SMTP"] == "true"
        assert env["SMTP_HOST"] == "mailpit"
        assert env["SMTP_PORT"] in mailpit_ports
        assert "PORT" not in env


def test_the_worker_routes_each_task_to_its_function_container(compose: dict[str, Any]) -> None:
    stack = services(compose)
    env = stack["jobs"]["environment"]
    routes = json.loads(env["INTERNAL_GATEWAY_DEVELOPMENT_MAP"])

    assert set(routes) == {simple_email.name, send_verification_link.name}
    for url in routes.values():
        parts = urlsplit(url)
        assert parts.hostname in stack
        assert parts.port == 8080
    callback = urlsplit(env["INTERNAL_JOBS_CALLBACK_URL"])
    assert callback.hostname == "jobs"
    assert str(callback.port) == env["INTERNAL_JOBS_CALLBACK_PORT"]
    assert len(env["HOSTNAME"]) >= 4


def test_the_link_function_asks_the_dev_graphql_api_for_the_demo_database(
    compose: dict[str, Any],
) -> None:
    stack = services(compose)
    env = stack["send-verification-link"]["environment"]
    api = stack["graphql"]["environment"]

    url = urlsplit(env["GRAPHQL_URL"])
    assert url.hostname == "graphql"
    assert str(url.port) == api["PORT"]
    assert env["GRAPHQL_HOST_HEADER"] == api["GRAPHQL_ALLOWED_HOST"]
    assert env["META_GRAPHQL_HOST_HEADER"] == api["GRAPHQL_ALLOWED_HOST"]
    assert env["DEFAULT_DATABASE_ID"] == DEMO_DATABASE_ID
    assert DEMO_DATABASE_ID in (ROOT / "devstack/src/devstack/demo.sql").read_text()


def test_published_host_ports_are_distinct(compose: dict[str, Any]) -> None:
    published = [
        entry.split(":")[0]
        for service in services(compose).values()
        for entry in service.get("ports", [])
    ]
    assert len(published) == len(set(published))


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode
    != 0,
    reason="docker compose is not installed",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.jobs.yml", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def stages(dockerfile: str) -> list[list[str]]:
    """The instructions of each build stage (continuation lines joined)."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    result: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_is_small_and_runs_as_a_non_root_user(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]

    assert final[0] == "FROM python:3.11-slim"
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert any(line.startswith("CMD [") for line in final)
    assert not any("astral-sh/uv" in line for line in final)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dependencies_are_installed_before_the_code_is_copied(dockerfile: str) -> None:
    build = stages(dockerfile)[0]
    install_deps = next(i for i, line in enumerate(build) if "-r /tmp/requirements.txt" in line)
    source_copies = [
        i
        for i, line in enumerate(build)
        if line.startswith("COPY ")
        and not line.split()[1].endswith(("pyproject.toml", "uv.lock"))
        and "--from=" not in line
    ]
    assert source_copies
    assert install_deps < min(source_copies)
    assert "--frozen" in build[install_deps]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_copied_path_exists_and_every_workspace_member_is_declared(dockerfile: str) -> None:
    build = stages(dockerfile)[0]
    copied = [
        line.split()[1] for line in build if line.startswith("COPY ") and "--from=" not in line
    ]
    for source in copied:
        assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}"
    for member in WORKSPACE_MEMBERS:
        assert f"{member}/pyproject.toml" in copied, f"{dockerfile} misses {member}/pyproject.toml"


@pytest.mark.parametrize(
    ("dockerfile", "module"),
    [
        ("functions/simple-email/Dockerfile", "simple_email"),
        ("functions/send-verification-link/Dockerfile", "send_verification_link"),
    ],
)
def test_function_image_serves_its_module(dockerfile: str, module: str) -> None:
    final = stages(dockerfile)[-1]
    assert f'CMD ["jobfn", "serve", "{module}"]' in final
    assert "EXPOSE 8080" in final


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    }
    assert {".venv", ".git", ".cache"} <= ignored
    assert not re.search(r"^(sdk|worker|functions|sql|devstack)\b", "\n".join(ignored), re.M)
