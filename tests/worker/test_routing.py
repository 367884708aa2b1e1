"""Task → function URL (the routing rules of jobservice.routing) and the supported-task filter."""

from __future__ import annotations

import pytest

from jobservice.routing import InvalidTaskError, Router, dns_safe, url_for
from jobservice.transport import AsgiTransport, Dispatch, HttpTransport

DISPATCH = Dispatch(
    worker_id="w", callback_url="http://127.0.0.1:1/callback", concurrency=1, timeout_for=float
)


@pytest.mark.parametrize(
    ("task", "label"),
    [
        ("email:send_verification_link", "email-send-verification-link"),
        ("simple-email", "simple-email"),
        ("Upper.Case__x", "upper-case-x"),
        ("--weird--", "weird"),
        ("x" * 80, "x" * 63),
    ],
)
def test_dns_safe(task: str, label: str) -> None:
    assert dns_safe(task) == label


def test_map_wins_then_template_then_base() -> None:
    mapping = {"mapped": "http://127.0.0.1:9/raw"}

    def plain(task: str, base: str) -> str:
        return url_for(task, gateway_map=mapping, template=None, base_url=base)

    assert plain("mapped", "http://gw/") == "http://127.0.0.1:9/raw"
    assert plain("simple-email", "http://gw/") == "http://gw/simple-email"
    assert plain("email:send_verification_link", "http://gw") == (
        "http://gw/email:send_verification_link"
    )
    assert (
        url_for(
            "email:send_verification_link",
            gateway_map={},
            template="http://{task}.fns.svc.cluster.local",
            base_url="http://gw",
        )
        == "http://email-send-verification-link.fns.svc.cluster.local"
    )
    # A base URL that contains {task} is a template too.
    assert url_for("a_b", gateway_map={}, template=None, base_url="http://{task}:8080/") == (
        "http://a-b:8080/"
    )


def test_in_process_map_wins_and_filter() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        return None

    router = Router(
        dispatch=DISPATCH,
        gateway_map={"t": "http://x/t"},
        template=None,
        base_url="http://gw",
        inprocess={"t": ("m:app", app)},
        support_any=False,
        supported=("t", "u"),
    )
    in_process = router.route("t")
    assert isinstance(in_process, AsgiTransport)
    assert (in_process.target, in_process.app, in_process.breaker_key) == ("m:app", app, None)
    http = router.route("u")
    assert isinstance(http, HttpTransport)
    assert (http.target, http.breaker_key) == ("http://gw/u", "http://gw")
    assert router.route("u") is http
    assert router.task_filter == ["t", "u"]
    assert router.supports("u")
    assert not router.supports("v")
    assert (
        Router(dispatch=DISPATCH, gateway_map={}, template=None, base_url="http://gw").task_filter
        is None
    )


@pytest.mark.parametrize("task", [".", "..", "a/b", "/etc", "../admin", "x/"])
def test_path_escaping_task_identifiers_are_refused(task: str) -> None:
    router = Router(
        dispatch=DISPATCH,
        gateway_map={task: "http://127.0.0.1:9/mapped"},
        template=None,
        base_url="http://gw",
    )
    with pytest.raises(InvalidTaskError, match="is not allowed"):
        router.route(task)
    with pytest.raises(InvalidTaskError):
        url_for(task, gateway_map={}, template="http://{task}.fns", base_url="http://gw")


def test_dots_inside_a_name_are_fine() -> None:
    assert url_for("a..b", gateway_map={}, template=None, base_url="http://gw") == "http://gw/a..b"
