"""docker-compose.jobs.yml and the Dockerfiles it builds."""

from __future__ import annotations

import json
import re
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
        "secrets",
        "migrate",
        "jobs",
        "simple-email",
        "send-verification-link",
        "graphql",
        "mailpit",
    }


def test_every_build_context_and_dockerfile_exists(compose: dict[str, Any]) -> None:
    built = set()
    for name, service in services(compose).items():
        build = service.get("build")
        if build is None:
            assert "image" in service, name
            continue
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build["dockerfile"]).is_file(), name
        built.add(build["dockerfile"])
    assert built == set(DOCKERFILES)


def test_base_images_are_variables_defaulting_to_the_public_images(
    compose: dict[str, Any],
) -> None:
    stack = services(compose)

    assert stack["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16-alpine}"
    assert stack["mailpit"]["image"].startswith("${MAILPIT_IMAGE:-axllent/mailpit:")
    for name, service in stack.items():
        if "build" in service:
            assert service["build"]["args"] == {
                "PYTHON_IMAGE": "${PYTHON_IMAGE:-python:3.11-slim}"
            }, name


OUR_SERVICES = ("secrets", "migrate", "jobs", "simple-email", "send-verification-link", "graphql")
SIGNED = ("jobs", "simple-email", "send-verification-link")


def test_our_containers_run_with_a_read_only_root_file_system(compose: dict[str, Any]) -> None:
    stack = services(compose)
    for name in OUR_SERVICES:
        assert stack[name]["read_only"] is True, name
        assert stack[name]["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in stack[name]["security_opt"], name
        assert "user" not in stack[name], f"{name} runs as the image's non-root user"


def test_the_job_service_and_functions_share_a_generated_signing_secret(
    compose: dict[str, Any],
) -> None:
    stack = services(compose)
    init = stack["secrets"]

    assert init["command"] == ["sh", "/app/bin/init-secrets.sh", "/secrets"]
    assert init["volumes"] == ["secrets:/secrets"]
    assert init["environment"]["JOBS_SIGNING_SECRET"] == "${JOBS_SIGNING_SECRET:-}"
    assert "secrets" in compose["volumes"]
    for name in SIGNED:
        service = stack[name]
        assert service["environment"]["JOBS_SIGNING_SECRET_FILE"] == "/secrets/signing-secret"
        assert "JOBS_SIGNING_SECRET" not in service["environment"], name
        assert "JOBS_INSECURE_CALLBACKS" not in service["environment"], name
        assert "secrets:/secrets:ro" in service["volumes"], name
        assert service["depends_on"]["secrets"]["condition"] == "service_completed_successfully"


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    stack = services(compose)

    def condition(service: str, on: str) -> str:
        return str(stack[service]["depends_on"][on]["condition"])

    assert stack["migrate"]["command"] == ["jobs", "migrate"]
    assert condition("migrate", "postgres") == "service_healthy"
    assert stack["jobs"]["command"] == ["jobs", "worker"]
    assert stack["jobs"]["environment"]["JOBS_API_TOKEN_FILE"] == "/secrets/api-token"
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


PUBLISHED = re.compile(r"^127\.0\.0\.1:\$\{(?P<variable>[A-Z_]+):-(?P<default>\d+)\}:\d+$")


def test_ports_are_published_on_loopback_only_each_overridable(compose: dict[str, Any]) -> None:
    entries = [
        entry for service in services(compose).values() for entry in service.get("ports", [])
    ]
    matches = [PUBLISHED.match(entry) for entry in entries]

    assert all(matches), entries
    variables = [m["variable"] for m in matches if m]
    defaults = [m["default"] for m in matches if m]
    assert len(set(variables)) == len(entries)
    assert len(set(defaults)) == len(entries)


ENGINE_CANNOT_RUN = 3  # docker/engine.sh's exit code where no engine can be installed or run


def test_docker_compose_accepts_the_file() -> None:
    # docker/engine.sh installs Docker and Compose v2 when missing (idempotent, quick when
    # present), so this runs on a fresh machine too; it skips only where no engine can run.
    engine = subprocess.run(
        ["bash", "docker/engine.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if engine.returncode == ENGINE_CANNOT_RUN:
        pytest.skip((engine.stderr.strip().splitlines() or ["no Docker engine can run here"])[-1])
    assert engine.returncode == 0, engine.stderr[-3000:]
    result = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.jobs.yml", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def stages(dockerfile: str) -> list[list[str]]:
    """The instructions of each build stage (continuation lines joined); [0] is the preamble."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    result: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        result[-1].append(line)
    return result


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_builds_from_the_package_registries_alone(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    preamble, build, final = stages(dockerfile)

    assert preamble == ["ARG PYTHON_IMAGE=python:3.11-slim"]
    assert build[0] == "FROM ${PYTHON_IMAGE} AS build"
    assert final[0] == "FROM ${PYTHON_IMAGE}"
    # no BuildKit front end or uv image to pull: uv comes from PyPI
    assert "# syntax=" not in text
    assert not [line for line in build + final if "--from=" in line and "--from=build" not in line]
    assert any("pip install" in line and '"uv==${UV_VERSION}"' in line for line in build)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_is_small_and_runs_as_a_non_root_user(dockerfile: str) -> None:
    final = stages(dockerfile)[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]

    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert any(line.startswith("CMD [") for line in final)
    assert not any("astral-sh/uv" in line for line in final)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dependencies_are_installed_before_the_code_is_copied(dockerfile: str) -> None:
    build = stages(dockerfile)[1]
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
    build = stages(dockerfile)[1]
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
