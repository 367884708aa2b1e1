"""The OpenAPI document of a job function, generated from its payload and result types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

if TYPE_CHECKING:
    from jobfn.function import JobFunction

_REF = "#/components/schemas/{model}"


def _schema(annotation: Any, components: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(annotation).json_schema(ref_template=_REF)
    components.update(schema.pop("$defs", {}))
    return schema


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "retry": {"type": "boolean", "description": "false: do not retry (permanent)"},
            "errors": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["error"],
    }


def openapi_document(fn: JobFunction) -> dict[str, Any]:
    """An OpenAPI 3.1 document: ``POST /`` with the payload schema and the reply shapes."""
    components: dict[str, Any] = {}
    shape = fn.handler.shape
    payload = (
        _schema(shape.payload_type, components)
        if shape.payload_type is not None
        else {"description": "any JSON value"}
    )
    result: dict[str, Any] = {"description": "the handler's return value"}
    if shape.return_type is not None and shape.return_type is not type(None):
        try:
            result = _schema(shape.return_type, components)
        except Exception:  # a return type pydantic cannot describe: leave it open
            result = {"description": "the handler's return value"}
    json_error = {"application/json": {"schema": _error_schema()}}
    operation: dict[str, Any] = {
        "summary": f"run job {fn.name}",
        "operationId": fn.name,
        "description": (fn.handler.func.__doc__ or "").strip(),
        "requestBody": {"required": False, "content": {"application/json": {"schema": payload}}},
        "responses": {
            "200": {
                "description": "the job completed",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"complete": {"const": True}, "result": result},
                            "required": ["complete"],
                        }
                    }
                },
            },
            "202": {"description": "accepted; the outcome is reported through the callback"},
            "400": {"description": "the body is not JSON (permanent)", "content": json_error},
            "401": {"description": "missing or invalid X-Job-Signature", "content": json_error},
            "413": {"description": "the body is too large (permanent)", "content": json_error},
            "422": {"description": "the payload is invalid (permanent)", "content": json_error},
            "500": {"description": "the handler failed (retryable)", "content": json_error},
        },
    }
    if fn.background:
        del operation["responses"]["200"]
    else:
        del operation["responses"]["202"]
    return {
        "openapi": "3.1.0",
        "info": {"title": fn.name, "version": "1"},
        "paths": {"/": {"post": operation}},
        "components": {"schemas": components},
    }
