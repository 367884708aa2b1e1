"""Property-based fuzzing of the two ports an attacker reaches: the callback server and a
function endpoint, each a real process. Arbitrary JSON, headers, sizes and encodings, signed
(so the input gets past the signature check) or not.

Properties: never a 5xx (the database is up), the process keeps serving, and nothing changes
a job the request had no right to (a bystander job of another worker and tenant).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobfn import protocol

if TYPE_CHECKING:
    from tests.security.conftest import Db, Recorder, StartFunction, StartService, Wire

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=40
).map(lambda text: text.strip(" \t"))  # HTTP cannot carry surrounding blanks
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=12,
)
callback_documents = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["success", "error", "progress", "maybe", ""]) | json_values,
        "result": json_values,
        "error": json_values,
        "message": json_values,
        "progress": json_values,
        "retry": json_values,
    },
)


def _bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        callback_documents.map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        json_values.map(lambda v: json.dumps(v).encode("utf-16")),
        st.binary(max_size=200),
        st.integers(min_value=1, max_value=3000).map(
            lambda n: b'{"status":"success","result":' + b"[" * n + b"]" * n + b"}"
        ),
        st.sampled_from(
            [
                b'{"status":"success","result":"\\ud800"}',
                b'{"status":"error","error":"a\\u0000b"}',
                b'{"status":"success","result":NaN}',
                b'{"status":"success","result":1e999}',
                b'{"status":"progress","progress":' + b"9" * 5000 + b"}",
                b"\xff\xfe\x00",
                b'{"status":"error","error":"' + b"x" * 20_000 + b'"}',
            ]
        ),
    )


@st.composite
def callbacks(draw: st.DrawFn, target: int, bystander: int) -> dict[str, Any]:
    """A callback request: headers (maybe missing, maybe odd) and a body."""
    maybe = st.none() | header_text
    return {
        "worker": draw(st.sampled_from(["fuzz-worker", "other-worker"]) | maybe),
        "job": draw(st.sampled_from([str(target), str(bystander), "0", str(2**63)]) | maybe),
        "attempt": draw(st.sampled_from(["1", "2", "0"]) | maybe),
        "database": draw(st.sampled_from([None, "5b720132-17d5-424d-9bcb-ee7b17c13d43"]) | maybe),
        "error": draw(st.sampled_from([None, "true", "TRUE"]) | maybe),
        "body": draw(_bodies()),
        "sign": draw(st.booleans()),
        "path": draw(st.sampled_from(["/callback", "/"])),
    }


def test_fuzzing_the_callback_server(job_service: StartService, db: Db, wire: type[Wire]) -> None:
    service = job_service(JOBS_WORKER_ENABLED="false")
    target = db.add("fuzzed")
    assert db.claim("fuzz-worker", "fuzzed") == (target, 1)
    bystander = db.add("bystander", {"keep": "me"}, db_id=wire.OTHER_DB_ID)
    assert db.claim("other-worker", "bystander") == (bystander, 1)
    untouched = db.job(bystander)
    client = httpx.Client(timeout=30)

    @FUZZ
    @given(request=callbacks(target, bystander))
    def check(request: dict[str, Any]) -> None:
        headers: dict[str, str] = {"Content-Type": "application/json"}
        for name, key in (
            ("X-Worker-Id", "worker"),
            ("X-Job-Id", "job"),
            ("X-Job-Attempt", "attempt"),
            ("X-Database-Id", "database"),
            ("X-Job-Error", "error"),
        ):
            if request[key] is not None:
                headers[name] = request[key]
        if request["sign"]:
            envelope = protocol.Envelope(
                "callback",
                (request["worker"] or "").strip(),
                (request["job"] or "").strip(),
                (request["attempt"] or "").strip(),
                (request["database"] or "").strip(),
                service.callback_url,
                (request["error"] or "").strip(),
                request["body"],
            )
            headers["X-Job-Signature"] = protocol.sign(wire.SECRET, envelope, int(time.time()))
        raw = [(k.encode(), v.encode("utf-8")) for k, v in headers.items()]
        reply = client.post(service.base + request["path"], content=request["body"], headers=raw)
        assert reply.status_code < 500, (reply.status_code, reply.text, request)
        assert reply.status_code in (200, 400, 401, 404, 409, 413), reply.text
        if reply.status_code == 200:
            assert request["sign"]  # only a signed callback settles anything
        assert db.job(bystander) == untouched

    try:
        check()
    finally:
        client.close()
    assert service.process.poll() is None
    assert "Traceback" not in service.output()
    assert httpx.get(f"{service.base}/health/readiness", timeout=10).status_code == 200


OVERSIZE = b"<a body of 1 MiB + 1 byte>"
"""Stands for a body over the function's limit (built at send time: hypothesis reprs it)."""


@st.composite
def dispatches(draw: st.DrawFn, callback_url: str) -> dict[str, Any]:
    maybe = st.none() | header_text
    return {
        "worker": draw(st.just("worker-x") | maybe),
        "job": draw(st.sampled_from(["1", "42"]) | maybe),
        "attempt": draw(st.sampled_from(["1", "3"]) | maybe),
        "database": draw(maybe),
        "completion": draw(st.sampled_from([None, "reply"]) | maybe),
        "callback": draw(
            st.sampled_from([None, callback_url, "http://[::1", "ftp://x/cb", "not a url"])
        ),
        "content_type": draw(st.sampled_from(["application/json", "text/plain"]) | maybe),
        "body": draw(
            st.one_of(
                json_values.map(lambda v: json.dumps(v).encode()),
                st.binary(max_size=300),
                st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
                st.just(OVERSIZE),
            )
        ),
        "sign": draw(st.booleans()),
    }


def test_fuzzing_a_function_endpoint(
    function_process: StartFunction, recorder: Recorder, wire: type[Wire]
) -> None:
    fn = function_process(JOBS_SIGNING_SECRET=wire.SECRET)
    client = httpx.Client(timeout=30)
    callback_url = f"{recorder.url}/callback"
    accepted = 0

    @FUZZ
    @given(request=dispatches(callback_url))
    def check(request: dict[str, Any]) -> None:
        nonlocal accepted
        headers: dict[str, str] = {}
        for name, key in (
            ("X-Worker-Id", "worker"),
            ("X-Job-Id", "job"),
            ("X-Job-Attempt", "attempt"),
            ("X-Database-Id", "database"),
            ("X-Job-Completion", "completion"),
            ("X-Callback-Url", "callback"),
            ("Content-Type", "content_type"),
        ):
            if request[key] is not None:
                headers[name] = request[key]
        body = b"x" * (1024 * 1024 + 1) if request["body"] is OVERSIZE else request["body"]
        if request["sign"]:
            job = protocol.parse_job_headers(
                [(k.lower().encode(), v.encode("utf-8")) for k, v in headers.items()]
            )
            envelope = protocol.dispatch_envelope(job, body)
            headers["X-Job-Signature"] = protocol.sign(wire.SECRET, envelope, int(time.time()))
        raw = [(k.encode(), v.encode("utf-8")) for k, v in headers.items()]
        reply = client.post(fn.url, content=body, headers=raw)
        assert reply.status_code < 500, (reply.status_code, reply.text)
        if not request["sign"]:
            assert reply.status_code in (401, 413)  # refused (too large: not even read)
        if reply.status_code == 200:
            accepted += 1

    try:
        check()
    finally:
        client.close()
    assert fn.process.poll() is None
    assert "Exception in ASGI application" not in fn.output()  # no crash, even after replying
    assert len(fn.ran()) == accepted  # the handler ran for exactly the signed, valid requests
