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
        for key, value in attributes.items():
            if value is not None and key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return to_json(line, fallback=str).decode()

    def line(
        self, created: float, level: int, logger: str, message: str, fields: Mapping[str, object]
    ) -> str:
        """What :meth:`format` gives for a record without exception made with these values
        and ``extra=fields``."""
        line: dict[str, Any] = {
            "time": self._time(created),
            "level": logging.getLevelName(level).lower(),
            "logger": logger,
            "message": message,
        }
        for key, value in fields.items():
            if value is not None and key not in _STANDARD:
                line[key] = value
        return to_json(line, fallback=str).decode()


def configure(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (default stderr) as JSON lines.

    Replaces the root logger's handlers; ``jobfn serve`` calls it at start-up. Call it yourself
    when you serve a job function another way and want the same logs.
    """
    handler = _JsonStreamHandler(stream or sys.stderr)
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


class _JsonStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure` installs (so that :func:`emit_direct` can recognise it)."""


def emit_direct(
    logger: logging.Logger, level: int, message: str, fields: Mapping[str, object]
) -> bool:
    """Write the line ``logger.log(level, message, extra=fields)`` would write, without making a
    :class:`logging.LogRecord`, when that record would go to exactly one place: the handler
    :func:`configure` installed on the root logger (no other handler, no filter on the way, the
    handler's level allows it). Whether it did; when not, log the usual way.
    """
    root = logging.root
    handlers = root.handlers
    if len(handlers) != 1:
        return False
    handler = handlers[0]
    if type(handler) is not _JsonStreamHandler or handler.filters or level < handler.level:
        return False
    formatter = handler.formatter
    if type(formatter) is not JsonFormatter:
        return False
    current: logging.Logger | None = logger
    while current is not None and current is not root:
        if current.handlers or current.filters or current.disabled or not current.propagate:
            return False
        current = current.parent
    if root.filters or root.disabled:
        return False
    text = formatter.line(time.time(), level, logger.name, message, fields)
    with handler.lock:  # type: ignore[union-attr]
        try:
            stream = handler.stream
            stream.write(text + handler.terminator)
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            return False
    return True
