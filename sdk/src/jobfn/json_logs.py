"""Structured logs: one JSON object per line, job fields attached to every job's lines."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

from pydantic_core import to_json

JOB_LOGGER = "jobfn.jobs"
"""The logger that writes the one line per job (``action``, ``outcome``, ``duration_ms``...)."""

_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "color_message", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and every extra field."""

    _second = -1
    _stamp = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        attributes = record.__dict__
        line: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in attributes.keys() - _STANDARD:
            value = attributes[key]
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return to_json(line, fallback=str).decode()


def configure(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (default stderr) as JSON lines.

    Replaces the root logger's handlers; ``jobfn serve`` calls it at start-up. Call it yourself
    when you serve a job function another way and want the same logs.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # One line per callback request would drown the one line per job.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose records carry the job's fields (``job_id``, ``task``, ...)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Merge the job fields under the call's own ``extra``."""
        fields: Mapping[str, object] = self.extra or {}
        extra = kwargs.get("extra")
        kwargs["extra"] = {**fields, **extra} if extra else fields
        return msg, kwargs
