"""``docker compose up`` for real: every email job completes, with its mail in the inbox.

Builds the images from this tree, brings ``docker-compose.jobs.yml`` up with ``--wait`` (no
setup: the signing secret is generated), enqueues through the running stack, checks what a
person would see (jobs completed, mails in the SMTP catcher, a failure's message in
``jobs status``), how the containers run (non-root, read-only root file system, clean stop on
SIGTERM within the 10 s before Docker kills) and that ``down -v`` leaves nothing. Prints each
image's size and how soon a function answers after its container starts.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

if TYPE_CHECKING:
    from tests.compose.conftest import Stack

pytestmark = pytest.mark.timeout(2400)

DEMO_USER = "9a5b1e3c-7d42-4c8e-b1f0-2e6d8c4a7b19"
# (task, payload, subject, a piece of the mail's text)
EMAIL_JOBS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "simple-email",
        {"to": "simple@example.com", "subject": "Hello from compose", "text": "It works"},
        "Hello from compose",
        "It works",
    ),
    (
        "email:send_verification_link",
        {
            "email_type": "email_verification",
            "email": "verify@example.com",
            "email_id": "e1",
            "verification_token": "t1",
        },
        "Demo Email Verification",
        "verify-email?email_id=e1&verification_token=t1",
    ),
    (
        "email:send_verification_link",
        {
            "email_type": "forgot_password",
            "email": "reset@example.com",
            "user_id": "u1",
            "reset_token": "r1",
        },
        "Demo Password Reset Request",
        "reset-password?role_id=u1&reset_token=r1",
    ),
    (
        "email:send_verification_link",
        {
            "email_type": "invite_email",
            "email": "invite@example.com",
            "invite_token": "i1",
            "sender_id": DEMO_USER,
        },
        "Demo Sender invited you to Demo!",
        "invite_token=i1",
    ),
]
OUR_SERVICES = ("jobs", "simple-email", "send-verification-link", "graphql")
FUNCTIONS = {
    "simple-email": "SIMPLE_EMAIL_PORT",
    "send-verification-link": "SEND_VERIFICATION_LINK_PORT",
}
IMAGES = {
    "jobs": "knative-jobs/jobs:dev",
    "simple-email": "knative-jobs/simple-email:dev",
    "send-verification-link": "knative-jobs/send-verification-link:dev",
    "graphql": "knative-jobs/dev-graphql:dev",
}
SIGKILLED = 137


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def inbox(stack: Stack) -> list[dict[str, Any]]:
    """Every message the SMTP catcher holds, in full (Mailpit's API)."""
    base = f"http://127.0.0.1:{stack.ports['MAILPIT_PORT']}/api/v1"
    listing = get_json(f"{base}/messages")
    return [get_json(f"{base}/message/{item['ID']}") for item in listing["messages"]]


def add_and_wait(stack: Stack, task: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``jobs add --wait --json`` inside the job service container: the finished job.

    The command exits non-zero when the job failed; the job is printed either way.
    """
    args = ("add", "--json", "--wait", "--timeout", "60", task, json.dumps(payload))
    out = stack.jobs(*args, check=False)
    try:
        job = json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"jobs add exited {out.returncode}: {out.stdout[-2000:]}{out.stderr[-2000:]}")
    assert isinstance(job, dict)
    assert (out.returncode == 0) == (job["status"] == "completed"), out.stderr
    return job


def started_at(container: dict[str, Any]) -> float:
    """The container's start time (Docker gives nanoseconds; Python reads microseconds)."""
    stamp = container["State"]["StartedAt"].rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    return datetime.fromisoformat(f"{whole}.{fraction[:6]:0<6}+00:00").timestamp()


def test_every_service_is_up_and_the_one_shots_succeeded(stack: Stack) -> None:
    for service in ("postgres", "mailpit", *OUR_SERVICES):
        state = stack.container(service)["State"]
        assert state["Running"], service
        if "Health" in state:
            assert state["Health"]["Status"] == "healthy", service
    for one_shot in ("secrets", "migrate"):
        state = stack.container(one_shot)["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), one_shot


def test_every_email_job_completes_with_its_mail_in_the_inbox(stack: Stack) -> None:
    jobs = [add_and_wait(stack, task, payload) for task, payload, _, _ in EMAIL_JOBS]

    assert [(job["status"], job["last_error"]) for job in jobs] == [("completed", None)] * len(
        EMAIL_JOBS
    )
    mails = {mail["To"][0]["Address"]: mail for mail in inbox(stack)}
    for _, payload, subject, text in EMAIL_JOBS:
        mail = mails[payload.get("to") or payload["email"]]
        assert mail["Subject"] == subject
        assert mail["From"]["Address"] == "no-reply@jobs.localhost"
        assert text in mail["Text"]


def test_a_failing_function_shows_its_error_in_jobs_status(stack: Stack) -> None:
    broken = {"email_type": "forgot_password", "email": "broken@example.com"}

    job = add_and_wait(stack, "email:send_verification_link", broken)
    status = stack.jobs("status", str(job["id"])).stdout

    assert job["status"] == "failed"
    assert "Missing required field: user_id_or_reset_token" in job["last_error"]
    assert "failed" in status
    assert "Missing required field" in status
    assert "broken@example.com" not in {mail["To"][0]["Address"] for mail in inbox(stack)}


def test_functions_refuse_a_dispatch_without_the_generated_signature(stack: Stack) -> None:
    for function, port in FUNCTIONS.items():
        request = urllib.request.Request(
            f"http://127.0.0.1:{stack.ports[port]}/",
            data=json.dumps({"to": "x@example.com", "subject": "s", "text": "t"}).encode(),
            headers={"Content-Type": "application/json", "X-Job-Id": "1", "X-Worker-Id": "w-1"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 401, function


def test_our_containers_run_as_non_root_on_a_read_only_root_file_system(stack: Stack) -> None:
    for service in OUR_SERVICES:
        container = stack.container(service)
        probe = stack.compose(
            "exec", "-T", service, "sh", "-c", "id -u; touch /probe 2>&1 || true"
        ).stdout

        assert container["HostConfig"]["ReadonlyRootfs"] is True, service
        assert container["HostConfig"]["CapDrop"] == ["ALL"], service
        assert container["Config"]["User"] == "10001:10001", service
        assert probe.splitlines()[0] == "10001", service
        assert "Read-only file system" in probe, service


def test_image_sizes_and_function_start_up(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {service: stack.image_size(image) / 1e6 for service, image in IMAGES.items()}
    ready_after = {}
    for function, port in FUNCTIONS.items():
        stack.compose("up", "-d", "--no-deps", "--force-recreate", function)
        url = f"http://127.0.0.1:{stack.ports[port]}/health/readiness"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        break
            except urllib.error.HTTPError as not_ready:
                not_ready.close()
            except OSError:  # not listening yet
                pass
            assert time.monotonic() < deadline, f"{function} not ready within 60 s"
            time.sleep(0.01)
        ready_after[function] = time.time() - started_at(stack.container(function))
    stack.compose("up", "-d", "--wait", "--wait-timeout", "120", timeout=180)

    with capsys.disabled():
        print()
        for service, size in sizes.items():
            extra = (
                f", ready {ready_after[service]:.2f} s after start" if service in FUNCTIONS else ""
            )
            print(f"compose: image {IMAGES[service]}: {size:.0f} MB{extra}")
    assert all(size > 0 for size in sizes.values())


def test_every_container_stops_cleanly_on_sigterm(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    took = {}
    for service in (*OUR_SERVICES, "mailpit", "postgres"):
        begun = time.monotonic()
        stack.compose("stop", "--timeout", "10", service, timeout=60)
        took[service] = time.monotonic() - begun
        state = stack.container(service)["State"]
        # Docker sends SIGKILL (exit 137) to a container still running after the 10 s
        assert state["ExitCode"] != SIGKILLED, f"{service} was killed after 10 s"
        assert state["ExitCode"] == 0, f"{service} exited {state['ExitCode']}"

    with capsys.disabled():
        print("\ncompose: stop on SIGTERM: " + ", ".join(f"{s} {t:.1f} s" for s, t in took.items()))


def test_the_postgres_image_honours_its_variables_and_keeps_data_in_its_volume(
    stack: Stack,
) -> None:
    """What the compose file relies on, for the public image and the stand-in alike."""
    name = f"{stack.project}-pg-probe"
    volume = f"{stack.project}-pg-probe-data"
    env = ["-e", "POSTGRES_USER=alice", "-e", "POSTGRES_PASSWORD=s3cret", "-e", "POSTGRES_DB=shop"]

    def start() -> str:
        """Start the image on the volume; the conninfo once it accepts connections."""
        stack.docker(
            "run", "-d", "--name", name, "-p", "127.0.0.1::5432",
            "-v", f"{volume}:/var/lib/postgresql/data", *env, stack.env["POSTGRES_IMAGE"],
        )  # fmt: skip
        port = stack.docker("port", name, "5432/tcp").stdout.split()[0].rsplit(":", 1)[1]
        conninfo = f"host=127.0.0.1 port={port} user=alice dbname=shop connect_timeout=5"
        deadline = time.monotonic() + 90
        while True:
            try:
                psycopg.connect(conninfo, password="s3cret").close()
                return conninfo
            except psycopg.OperationalError:
                logs = stack.docker("logs", name, check=False)
                assert time.monotonic() < deadline, logs.stdout + logs.stderr
                time.sleep(0.2)

    try:
        conninfo = start()
        with psycopg.connect(conninfo, password="s3cret") as conn:
            conn.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
        stack.docker("rm", "-f", name)
        conninfo = start()

        with psycopg.connect(conninfo, password="s3cret") as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(conninfo, password="wrong")
    finally:
        stack.docker("rm", "-f", name, check=False)
        stack.docker("volume", "rm", volume, check=False)


def test_down_leaves_nothing_behind(stack: Stack) -> None:
    stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=180)

    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
