"""The worker reads at most ``JOBS_MAX_REPLY_BYTES`` of a reply, decompressed: a function (or
anything on its path) cannot take the worker's memory with a huge or compressed reply."""

from __future__ import annotations

import contextlib
import functools
import json
import textwrap
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.security.conftest import Db, Recorder, StartService, Wire

MIB = 1024 * 1024
BOMB_MIB = 512


def _gzip_bomb() -> bytes:
    """``BOMB_MIB`` MiB of zeros, gzip-compressed (about 2 MB)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(16 * MIB)
    parts = [packer.compress(zeros) for _ in range(BOMB_MIB // 16)]
    parts.append(packer.flush())
    return b"".join(parts)


def _stream_a_gigabyte(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b" " * MIB
    try:
        for _ in range(1024):
            handler.wfile.write(chunk)
    except OSError:
        pass  # the worker hung up once it had read enough


def test_a_streamed_gigabyte_and_a_gzip_bomb_fail_the_attempt_in_bounded_memory(
    job_service: StartService, db: Db, recorder: Recorder, wire: type[Wire]
) -> None:
    bomb = _gzip_bomb()

    def send_bomb(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(bomb)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the worker hung up once it had read enough
            handler.wfile.write(bomb)

    def declared_two_mib(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(2 * MIB))
        handler.end_headers()
        with contextlib.suppress(OSError):
            handler.wfile.write(b" " * (2 * MIB))

    recorder.replies["/stream"] = _stream_a_gigabyte
    recorder.replies["/bomb"] = send_bomb
    recorder.replies["/declared"] = declared_two_mib
    routes = {name: f"{recorder.url}/{name}" for name in ("stream", "bomb", "declared")}
    service = job_service(INTERNAL_GATEWAY_DEVELOPMENT_MAP=json.dumps(routes))
    baseline_kb = service.status("VmRSS")
    streamed = db.add("stream")
    bombed = db.add("bomb")
    declared = db.add("declared")

    def failed(job_id: int) -> str | None:
        row = db.job(job_id)
        return row["last_error"] if row is not None and row["locked_by"] is None else None

    for job_id in (streamed, bombed, declared):
        message = wire.wait_until(functools.partial(failed, job_id), f"job {job_id} to fail")
        assert "larger than 1048576 bytes (JOBS_MAX_REPLY_BYTES)" in message
    growth_mb = (service.status("VmHWM") - baseline_kb) / 1024
    print(
        f"worker peak RSS growth over the 1 GiB stream and {BOMB_MIB} MiB bomb: {growth_mb:.1f} MB"
    )
    assert growth_mb < 100, f"the worker grew by {growth_mb:.0f} MB"
    assert service.process.poll() is None


IN_PROCESS = """
from jobfn import job_function


@job_function(name="huge-inproc")
def huge(payload: dict[str, int]) -> dict[str, str]:
    return {"blob": "x" * payload["size"]}
"""


def test_in_process_replies_are_capped_too(
    job_service: StartService, db: Db, wire: type[Wire], tmp_path: Path
) -> None:
    (tmp_path / "sec_huge.py").write_text(textwrap.dedent(IN_PROCESS))
    job_service(
        JOBS_INPROCESS=json.dumps({"huge-inproc": "sec_huge:huge"}),
        JOBS_MAX_REPLY_BYTES="65536",
        PYTHONPATH=str(tmp_path),
    )
    small = db.add("huge-inproc", {"size": 1000})
    big = db.add("huge-inproc", {"size": 200_000})
    wire.wait_until(lambda: db.history(small), "the small reply to complete")

    def failed() -> str | None:
        row = db.job(big)
        return row["last_error"] if row is not None and row["locked_by"] is None else None

    message = wire.wait_until(failed, "the big reply to fail")
    assert "larger than 65536 bytes (JOBS_MAX_REPLY_BYTES)" in message
    assert "in-process function sec_huge:huge" in message
