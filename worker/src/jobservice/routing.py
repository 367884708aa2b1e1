"""Where a task goes (pure): an in-process function, or a URL (contract section 2).

First match wins:

1. ``JOBS_INPROCESS`` names the task → the function imported into the worker;
2. ``INTERNAL_GATEWAY_DEVELOPMENT_MAP`` has the task → that URL verbatim (every environment);
3. a URL template containing ``{task}`` (``JOBS_GATEWAY_URL_TEMPLATE``, or a base URL that
   contains ``{task}``) → the template with the DNS-safe task name;
4. ``<INTERNAL_GATEWAY_URL or KNATIVE_SERVICE_URL>/<task identifier>``.

A task identifier ``.`` or ``..``, or one containing ``/``, is refused
(:class:`InvalidTaskError`): appended to a base URL it would reach another path than the
function's (the SQL refuses such identifiers at enqueue too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")

Asgi = Callable[..., Any]
"""An ASGI application ``app(scope, receive, send)``."""


class InvalidTaskError(ValueError):
    """A task identifier that cannot name a function (``.``, ``..``, or containing ``/``)."""


def check_task(task: str) -> None:
    """Raise :class:`InvalidTaskError` for ``.``, ``..`` or a task identifier with ``/``."""
    if task in (".", "..") or "/" in task:
        raise InvalidTaskError(
            f"task identifier {task[:100]!r} is not allowed: '.', '..' and identifiers "
            "containing '/' would route the job to another URL path than its function's"
        )


def dns_safe(task: str) -> str:
    """``email:send_verification_link`` → ``email-send-verification-link`` (a DNS label)."""
    label = _DASHES.sub("-", _NOT_DNS.sub("-", task.lower())).strip("-")
    return label[:63].rstrip("-") or "task"


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """POST the job to ``url``."""

    url: str


@dataclass(frozen=True, slots=True)
class InProcessRoute:
    """Call ``app`` (a ``jobfn`` function's ASGI interface) in this process."""

    target: str
    app: Asgi


Route = HttpRoute | InProcessRoute


def url_for(
    task: str,
    *,
    gateway_map: Mapping[str, str],
    template: str | None,
    base_url: str,
) -> str:
    """The function URL of ``task`` (rules 2-4 above); :class:`InvalidTaskError` for a task
    identifier that would escape its path."""
    check_task(task)
    mapped = gateway_map.get(task)
    if mapped is not None:
        return mapped
    if template is None and "{task}" in base_url:
        template = base_url
    if template is not None:
        return template.replace("{task}", dns_safe(task))
    return f"{base_url.rstrip('/')}/{quote(task, safe=':@!$&()*+,;=-._~')}"


class Router:
    """Routes tasks and filters the tasks this worker supports; results cached per task."""

    def __init__(
        self,
        *,
        gateway_map: Mapping[str, str],
        template: str | None,
        base_url: str,
        inprocess: Mapping[str, tuple[str, Asgi]] | None = None,
        support_any: bool = True,
        supported: tuple[str, ...] = (),
    ) -> None:
        self._map = dict(gateway_map)
        self._template = template
        self._base = base_url
        self._inprocess = dict(inprocess or {})
        self.support_any = support_any
        self.supported = supported
        self._cache: dict[str, Route] = {}

    @property
    def task_filter(self) -> list[str] | None:
        """The ``task_identifiers`` argument of ``claim_jobs``: ``None`` means any task."""
        return None if self.support_any else list(self.supported)

    def route(self, task: str) -> Route:
        """Where ``task`` runs; :class:`InvalidTaskError` for ``.``, ``..`` or ``/`` in it."""
        route = self._cache.get(task)
        if route is None:
            check_task(task)
            found = self._inprocess.get(task)
            if found is not None:
                route = InProcessRoute(target=found[0], app=found[1])
            else:
                route = HttpRoute(
                    url_for(
                        task, gateway_map=self._map, template=self._template, base_url=self._base
                    )
                )
            self._cache[task] = route
        return route

    def supports(self, task: str) -> bool:
        """Whether this worker runs ``task``."""
        return self.support_any or task in self.supported
