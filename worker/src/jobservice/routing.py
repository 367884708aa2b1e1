"""Where a task goes: the :class:`~jobservice.transport.Transport` that runs its jobs.

First match wins:

1. ``JOBS_INPROCESS`` names the task → the function imported into the worker: a ``jobfn``
   function is called directly (:class:`~jobservice.direct.DirectTransport`), any other ASGI
   application through its ASGI interface (:class:`~jobservice.transport.AsgiTransport`);
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
from collections.abc import Mapping
from urllib.parse import quote

from jobfn.job_app import JobApp
from jobservice.direct import DirectTransport
from jobservice.transport import Asgi, AsgiTransport, Dispatch, HttpTransport, Transport

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")


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
    """Routes tasks to transports and filters the tasks this worker supports; the transport
    of each task is built once. :meth:`start`/:meth:`close` open and close what the transports
    share (:class:`~jobservice.transport.Dispatch`)."""

    def __init__(
        self,
        *,
        dispatch: Dispatch,
        gateway_map: Mapping[str, str],
        template: str | None,
        base_url: str,
        inprocess: Mapping[str, tuple[str, Asgi]] | None = None,
        support_any: bool = True,
        supported: tuple[str, ...] = (),
    ) -> None:
        self.dispatch = dispatch
        self._map = dict(gateway_map)
        self._template = template
        self._base = base_url
        self._inprocess = dict(inprocess or {})
        self.support_any = support_any
        self.supported = supported
        self._cache: dict[str, Transport] = {}
        self._http: dict[str, HttpTransport] = {}

    @property
    def task_filter(self) -> list[str] | None:
        """The ``task_identifiers`` argument of ``claim_jobs``: ``None`` means any task."""
        return None if self.support_any else list(self.supported)

    async def start(self) -> None:
        """Open what the transports share (the HTTP connection pool)."""
        await self.dispatch.start()

    async def close(self) -> None:
        """Close it (and cancel in-process calls still running)."""
        await self.dispatch.close()

    def route(self, task: str) -> Transport:
        """The transport of ``task``; :class:`InvalidTaskError` for ``.``, ``..`` or ``/``."""
        transport = self._cache.get(task)
        if transport is None:
            check_task(task)
            found = self._inprocess.get(task)
            if found is not None:
                target, app = found
                if isinstance(app, JobApp):  # a jobfn function: called without HTTP
                    transport = DirectTransport(target, app.fn, self.dispatch)
                else:
                    transport = AsgiTransport(target, app, self.dispatch)
            else:
                url = url_for(
                    task, gateway_map=self._map, template=self._template, base_url=self._base
                )
                # Tasks sent to the same URL share one transport (and one breaker key).
                http = self._http.get(url)
                if http is None:
                    http = self._http[url] = HttpTransport(url, self.dispatch)
                transport = http
            self._cache[task] = transport
        return transport

    def supports(self, task: str) -> bool:
        """Whether this worker runs ``task``."""
        return self.support_any or task in self.supported
