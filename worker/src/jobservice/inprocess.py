"""Functions run inside the worker process (``JOBS_INPROCESS``): import and lifespan.

A target ``"module:attr"`` names a ``jobfn`` ``JobFunction`` (or any ASGI application). The
worker calls a ``JobFunction`` directly, without HTTP (:class:`jobservice.direct.DirectTransport`,
through the function's :class:`jobfn.direct.DirectRunner`), any other application through its
ASGI interface (:class:`jobservice.transport.AsgiTransport`). :func:`load` returns the ASGI app
either way (a function's :attr:`~jobfn.JobFunction.asgi`, whose ``fn`` the router finds). The
ASGI lifespan protocol is run around the worker's life, as uvicorn's ``lifespan="auto"`` does
(for a function: its start-up checks, then draining its background jobs); an application that
does not speak it is used as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import Mapping
from typing import Any

from jobfn import JobFunction
from jobfn.errors import ConfigError as JobFnConfigError
from jobservice.config import ConfigError
from jobservice.transport import Asgi, Message


def load(target: str) -> Asgi:
    """Import ``module:attr`` (attr may be dotted); raise :class:`ConfigError` when it fails."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("JOBS_INPROCESS", f"an importable module:attr ({exc})", target) from None
    if isinstance(obj, JobFunction):
        try:
            obj.start()
        except JobFnConfigError as exc:  # the function refuses its own configuration
            raise ConfigError(
                "JOBS_INPROCESS", f"a function that can start: {exc}", target
            ) from None
        asgi: Asgi = obj.asgi  # the ASGI app built from the function
        return asgi
    if not callable(obj):
        raise ConfigError("JOBS_INPROCESS", "an ASGI application (a jobfn function)", target)
    app: Asgi = obj
    return app


def load_all(targets: Mapping[str, str]) -> dict[str, tuple[str, Asgi]]:
    """``{task: (target, app)}`` for every entry of ``JOBS_INPROCESS``."""
    return {task: (target, load(target)) for task, target in targets.items()}


class Lifespan:
    """Runs one application's ASGI lifespan (startup now, shutdown later)."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.supported = False

    async def startup(self) -> None:
        """Send ``lifespan.startup``; raise ``RuntimeError`` when the app reports a failure."""
        self._task = asyncio.create_task(self._main())
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply is None:
            return
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"application startup failed: {reply.get('message', '')}")
        self.supported = True

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app (a few seconds at most)."""
        if self._task is None:
            return
        if self.supported:
            await self._to_app.put({"type": "lifespan.shutdown"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reply(), 5.0)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _main(self) -> None:
        scope: Message = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception:
            pass  # an application without lifespan support (uvicorn's "auto" behaviour)
        finally:
            await self._from_app.put({"type": "_ended"})

    async def _reply(self) -> Message | None:
        reply = await self._from_app.get()
        return None if reply["type"] == "_ended" else reply
