"""Structured JSON logs: one object per line with ``time``, ``level``, ``logger``, ``action``,
``message`` and the event's fields (``job_id``, ``task``, ``worker_id``, ...)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """Formats records as JSON; ``extra`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        entry["action"] = fields.pop("action", None)
        entry["message"] = record.getMessage()
        entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup(level: str = "INFO") -> None:
    """Send JSON logs of the ``jobservice`` loggers to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("jobservice")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def event(logger: logging.Logger, level: int, action: str, message: str, **fields: object) -> None:
    """Log ``message`` with ``action`` and ``fields`` as structured keys."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"action": action, **fields})
