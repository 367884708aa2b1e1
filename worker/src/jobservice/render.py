"""How the ``jobs`` command line prints: colour tables in a terminal, plain text when piped.

Colour (``rich``) is used only when the output is a terminal and ``NO_COLOR`` is unset; else
tables are plain aligned text, easy to ``grep``/``awk``. ``--json`` prints JSON instead of
either. The value formatting (relative times, durations, cells) is pure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from jobservice.durations import describe

STATUS_STYLE = {
    "queued": "cyan",
    "scheduled": "blue",
    "running": "bold yellow",
    "retrying": "magenta",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "dim",
}


def relative(moment: datetime | None, now: datetime) -> str:
    """``5m ago`` / ``in 2h`` / ``now`` (``-`` for no time)."""
    if moment is None:
        return "-"
    delta = moment - now
    if abs(delta.total_seconds()) < 1:
        return "now"
    text = describe(delta)
    return f"in {text}" if delta.total_seconds() > 0 else f"{text} ago"


def seconds(value: float | None) -> str:
    """A duration in seconds for a table: ``12 ms``, ``3.4 s``, ``2m 5s``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return describe_seconds(value)


def describe_seconds(value: float) -> str:
    from datetime import timedelta

    return describe(timedelta(seconds=value))


def cell(value: object, now: datetime, *, limit: int | None = 60) -> str:
    """One table cell as text (times relative to ``now``, text longer than ``limit`` cut)."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return relative(value, now)
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict | list):
        value = json.dumps(value)
    text = str(value).replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def plain_table(rows: Sequence[Sequence[str]], columns: Sequence[str]) -> str:
    """Aligned plain text: a header line, then one line per row."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def dumps(value: object) -> str:
    """JSON for ``--json`` (times as ISO 8601)."""
    return json.dumps(value, default=_json_default, indent=2)


def wants_colour(out: TextIO, env: Mapping[str, str]) -> bool:
    """Colour only for a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    if env.get("NO_COLOR", "") != "":
        return False
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


class Output:
    """Where a command prints: ``json`` mode, colour or plain."""

    def __init__(
        self, out: TextIO, *, json_mode: bool, env: Mapping[str, str] | None = None
    ) -> None:
        self.out = out
        self.json_mode = json_mode
        self.colour = wants_colour(out, os.environ if env is None else env)
        self.now = datetime.now(UTC)
        self._console: Any = None
        if self.colour:
            from rich.console import Console

            self._console = Console(file=out, highlight=False)

    def line(self, text: str, style: str | None = None) -> None:
        """Print one line (styled in colour mode)."""
        if self._console is not None and style:
            from rich.text import Text

            self._console.print(Text(text, style=style))
        else:
            print(text, file=self.out, flush=True)

    def json(self, value: object) -> None:
        """Print ``value`` as JSON."""
        print(dumps(value), file=self.out, flush=True)

    def table(
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str = ""
    ) -> None:
        """A table of ``rows``; the ``status`` column is coloured in colour mode."""
        cells = [[self.format(c, row.get(c)) for c in columns] for row in rows]
        if self._console is None:
            print(plain_table(cells, columns), file=self.out, flush=True)
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title or None, header_style="bold", show_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row, line in zip(rows, cells, strict=True):
            table.add_row(
                *(
                    Text(v, style=STATUS_STYLE.get(str(row.get(c)), ""))
                    if c == "status"
                    else Text(v)
                    for c, v in zip(columns, line, strict=True)
                )
            )
        self._console.print(table)

    def format(self, column: str, value: object, *, limit: int | None = 60) -> str:
        """One cell; ``*_seconds`` and ``duration`` columns print as durations."""
        if isinstance(value, int | float) and (column.endswith("_seconds") or column == "duration"):
            return seconds(float(value))
        if column == "progress" and isinstance(value, int):
            return f"{value}%"
        return cell(value, self.now, limit=limit)

    def record(self, record: Mapping[str, Any], *, pretty: Sequence[str] = ()) -> None:
        """``key  value`` lines, every value whole (an error is never cut: scripts read it);
        the ``pretty`` keys are printed as indented JSON below."""
        width = max(len(k) for k in record)
        for key, value in record.items():
            if key in pretty:
                continue
            if isinstance(value, str) and "\n" in value:
                indent = "\n" + " " * (width + 2)
                text = indent.join(value.splitlines())
            else:
                text = self.format(key, value, limit=None)
            if isinstance(value, datetime):
                text = f"{value.isoformat(timespec='seconds')} ({relative(value, self.now)})"
            style = STATUS_STYLE.get(str(value)) if key == "status" else None
            self.line(f"{key.ljust(width)}  {text}", style)
        for key in pretty:
            if key in record and record[key] is not None:
                self.line(f"{key}:", "bold")
                body = json.dumps(record[key], indent=2, default=_json_default)
                if self._console is not None:
                    from rich.syntax import Syntax

                    self._console.print(Syntax(body, "json", background_color="default"))
                else:
                    print(body, file=self.out, flush=True)

    @contextmanager
    def progress(self, total: int, what: str) -> Iterator[Any]:
        """A progress bar in colour mode; yields ``advance(n)``."""
        if self._console is None:
            yield lambda n: None
            return
        from rich.progress import Progress

        with Progress(console=self._console, transient=True) as bar:
            task = bar.add_task(what, total=total)
            yield lambda n: bar.advance(task, n)
