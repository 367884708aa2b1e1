"""The one log line per job as ``jobfn serve`` writes it (JSON lines,
:func:`jobfn.json_logs.configure`): the same line whether it is written directly (the configured
handler is the only place it goes) or through a LogRecord (another handler listens too), and a
failure's line carries its traceback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from jobfn import job_function, json_logs
from jobfn.testing import TEST_DATABASE_ID, invoke


@job_function(name="tidy")
def tidy(payload: dict[str, Any]) -> dict[str, int]:
    if payload.get("crash"):
        raise RuntimeError("the disk is full")
    return {"n": 1}


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    json_logs.configure(logging.INFO, stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def job_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "jobfn.jobs"]


def test_the_job_line_is_the_same_written_directly_or_through_another_handler(
    json_stream: io.StringIO,
) -> None:
    invoke(tidy, {}, job_id="41", completion="reply")
    [direct] = job_lines(json_stream)
    assert direct["message"] == "job 41 tidy: success"
    assert direct["level"] == "info"
    assert (direct["job_id"], direct["task"], direct["attempt"]) == ("41", "tidy", 1)
    assert direct["database_id"] == TEST_DATABASE_ID
    assert (direct["action"], direct["outcome"], direct["status"]) == ("run", "success", 200)
    assert isinstance(direct["duration_ms"], float)

    seen: list[logging.LogRecord] = []

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    listener = Listener()
    logging.getLogger().addHandler(listener)
    try:
        invoke(tidy, {}, job_id="41", completion="reply")
    finally:
        logging.getLogger().removeHandler(listener)
    [record] = [r for r in seen if r.name == "jobfn.jobs"]
    assert record.getMessage() == "job 41 tidy: success"
    _, through_record = job_lines(json_stream)
    ignore = {"time", "duration_ms"}
    assert {k: v for k, v in through_record.items() if k not in ignore} == {
        k: v for k, v in direct.items() if k not in ignore
    }


def test_a_failed_job_line_carries_the_exception(json_stream: io.StringIO) -> None:
    invoke(tidy, {"crash": True}, job_id="42", completion="reply")
    [line] = job_lines(json_stream)
    assert line["level"] == "error"
    assert line["outcome"] == "error"
    assert "RuntimeError: the disk is full" in line["exception"]
