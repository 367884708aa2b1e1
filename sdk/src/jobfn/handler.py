"""A user's handler and its shape: how its payload is parsed and how it is called.

Turns "run this handler on these request bytes" into an :class:`~jobfn.types.Outcome`
(pure of HTTP: no headers, no replies).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, from_json, to_json

from jobfn.context import JobContext
from jobfn.errors import PermanentError
from jobfn.types import Outcome

_NO_ANNOTATION = (inspect.Parameter.empty, Any, object, None)
_CTX_NAMES = ("ctx", "context")


SUCCESS = Outcome(200)
"""The outcome of a handler that returned ``None`` (shared: outcomes are never modified)."""


class InvalidPayloadError(Exception):
    """The request body cannot become the handler's payload; ``outcome`` is the reply."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


@dataclass(frozen=True, slots=True)
class HandlerShape:
    """Which arguments a handler takes and what its payload should be."""

    takes_payload: bool
    takes_ctx: bool
    payload_type: Any
    """The payload annotation (or the ``payload=`` option); ``None`` means any JSON value."""
    return_type: Any


def inspect_handler(
    handler: Callable[..., Any],
    *,
    payload_type: Any = None,
    localns: Mapping[str, Any] | None = None,
) -> HandlerShape:
    """Read ``handler``'s signature: ``(payload, ctx)``, ``(payload)``, ``(ctx)`` or ``()``.

    Raises :class:`TypeError` naming the handler when the signature does not fit.
    """
    where = getattr(handler, "__qualname__", repr(handler))
    if not callable(handler):
        raise TypeError(f"@job_function needs a function (got {handler!r})")
    every = list(inspect.signature(handler).parameters.values())
    params = [p for p in every if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_keywords = [p for p in every if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(params) > 2 or required_keywords:
        taken = ", ".join(str(p) for p in every)
        raise TypeError(
            f"job handler {where} must take (payload, ctx), (payload), (ctx) or nothing; "
            f"it takes ({taken})"
        )
    try:
        hints = typing.get_type_hints(handler, localns=dict(localns) if localns else None)
    except Exception as exc:
        if payload_type is None and params:
            raise TypeError(
                f"cannot resolve the annotations of job handler {where} ({exc}); define the "
                "payload model where the handler's module can see it, or pass "
                "@job_function(payload=Model)"
            ) from exc
        hints = {}

    def is_ctx(param: inspect.Parameter) -> bool:
        hint = hints.get(param.name, inspect.Parameter.empty)
        if hint is JobContext:
            return True
        return hint in _NO_ANNOTATION and param.name in _CTX_NAMES

    if len(params) == 2:
        takes_payload, takes_ctx, payload_param = True, True, params[0]
    elif len(params) == 1 and is_ctx(params[0]):
        takes_payload, takes_ctx, payload_param = False, True, None
    elif len(params) == 1:
        takes_payload, takes_ctx, payload_param = True, False, params[0]
    else:
        takes_payload, takes_ctx, payload_param = False, False, None
    if payload_type is None and payload_param is not None:
        payload_type = hints.get(payload_param.name)
    if payload_type in _NO_ANNOTATION:
        payload_type = None
    return_type = hints.get("return")
    return HandlerShape(takes_payload, takes_ctx, payload_type, return_type)


def error_message(exc: BaseException) -> str:
    """An exception's message, or its type name when it has none."""
    return str(exc) or type(exc).__name__


def validation_outcome(exc: ValidationError) -> Outcome:
    """A 422 (payload of the wrong shape) or a 400 (body that is not JSON), both permanent."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        return Outcome(
            400,
            "bad_request",
            error=f"request body is not valid JSON: {errors[0]['msg']}",
            retry=False,
        )
    fields = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]} for error in errors
    ]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'payload'}: {error['msg']}"
        for error in errors
    )
    return Outcome(
        422, "invalid", error=f"payload is invalid: {summary}", retry=False, errors=fields
    )


class Handler:
    """A handler with what it takes to run it: payload parsing, calling, timing out."""

    __slots__ = ("_adapter", "_args", "_direct", "_is_async", "func", "shape", "timeout")

    def __init__(self, func: Callable[..., Any], shape: HandlerShape, timeout: float | None):
        self.func = func
        self.shape = shape
        self.timeout = timeout
        self._is_async = inspect.iscoroutinefunction(func)
        self._direct = self._is_async and timeout is None
        """Awaited as it is, without a timeout or a thread: the common case, made cheap."""
        self._args = (2 if shape.takes_payload else 0) + (1 if shape.takes_ctx else 0)
        """Which arguments it takes: 3 (payload, ctx), 2 (payload), 1 (ctx), 0 none."""
        self._adapter: TypeAdapter[Any] | None = (
            TypeAdapter(shape.payload_type) if shape.payload_type is not None else None
        )

    @property
    def adapter(self) -> TypeAdapter[Any] | None:
        """The payload's validator (``None`` when the payload is any JSON value)."""
        return self._adapter

    def parse(self, body: bytes) -> Any:
        """The payload from request bytes (an empty body is ``{}``); raises InvalidPayloadError."""
        if not body:
            body = b"{}"
        try:
            if self._adapter is None:
                return from_json(body)
            return self._adapter.validate_json(body)
        except ValidationError as exc:
            raise InvalidPayloadError(validation_outcome(exc)) from exc
        except ValueError as exc:
            raise InvalidPayloadError(
                Outcome(
                    400, "bad_request", error=f"request body is not valid JSON: {exc}", retry=False
                )
            ) from exc

    def coerce(self, payload: Any) -> Any:
        """A Python payload validated like a parsed one (for in-process runs)."""
        if self._adapter is None:
            return payload
        try:
            return self._adapter.validate_python(payload)
        except ValidationError as exc:
            raise InvalidPayloadError(validation_outcome(exc)) from exc

    def _arguments(self, payload: Any, ctx: JobContext) -> tuple[Any, ...]:
        which = self._args
        if which == 3:
            return (payload, ctx)
        if which == 2:
            return (payload,)
        return (ctx,) if which == 1 else ()

    async def call(self, payload: Any, ctx: JobContext) -> Any:
        """Call the handler (a sync one in the thread pool), without a timeout."""
        args = self._arguments(payload, ctx)
        if self._is_async:
            return await self.func(*args)
        return await anyio.to_thread.run_sync(
            functools.partial(self.func, *args), abandon_on_cancel=True
        )

    async def run(self, payload: Any, ctx: JobContext) -> Outcome:
        """Run the handler on a parsed payload and say how it went (never raises Exception)."""
        try:
            if self._direct:
                value = await self.func(*self._arguments(payload, ctx))
            elif self.timeout is None:
                value = await self.call(payload, ctx)
            else:
                try:
                    async with asyncio.timeout(self.timeout) as deadline:
                        value = await self.call(payload, ctx)
                except TimeoutError as exc:
                    if not deadline.expired():
                        raise
                    return Outcome(
                        500, "timeout", error=f"timed out after {self.timeout:g} s", exception=exc
                    )
        except PermanentError as exc:
            return Outcome(exc.status, "permanent", error=exc.message, retry=False, exception=exc)
        except Exception as exc:
            return Outcome(500, "error", error=error_message(exc), exception=exc)
        if value is None:
            return SUCCESS
        try:
            return Outcome(200, result_json=to_json(value))
        except PydanticSerializationError as exc:
            return Outcome(
                500,
                "error",
                error=f"the handler returned a value that is not JSON-serialisable: {exc}",
                exception=exc,
            )
