"""The two GraphQL queries, sent with ``gql`` over ``requests`` (timeouts, real ``Host``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportError,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.requests import RequestsHTTPTransport

from send_verification_link.errors import InvalidJobError, UnavailableError
from send_verification_link.settings import Settings

GET_USER = """
  query GetUser($userId: UUID!) {
    users(where: { id: { equalTo: $userId } }, first: 1) {
      nodes {
        username
        displayName
        profilePicture
      }
    }
  }
"""

GET_DATABASE_INFO = """
  query GetDatabaseInfo($databaseId: UUID!) {
    databases(where: { id: { equalTo: $databaseId } }, first: 1) {
      nodes {
        sites {
          nodes {
            domains {
              nodes {
                subdomain
                domain
              }
            }
            logo
            title
            siteThemes {
              nodes {
                theme
              }
            }
            siteModules(where: { name: { equalTo: "legal_terms_module" } }) {
              nodes {
                data
              }
            }
          }
        }
      }
    }
  }
"""

_GET_USER = GraphQLRequest(GET_USER, operation_name="GetUser")
_GET_DATABASE_INFO = GraphQLRequest(GET_DATABASE_INFO, operation_name="GetDatabaseInfo")

_RETRYABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Endpoint:
    """A GraphQL endpoint and the headers every request to it carries."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    @property
    def label(self) -> str:
        """``url`` plus the ``Host`` it is sent with, for messages."""
        host = self.headers.get("Host")
        return f"{self.url} (Host: {host})" if host else self.url


def meta_endpoint(settings: Settings) -> Endpoint:
    """The endpoint of ``GetDatabaseInfo``: ``META_GRAPHQL_URL`` with ``X-Meta-Schema: true``."""
    assert settings.meta_graphql_url is not None
    headers = {"X-Meta-Schema": "true"}
    if settings.auth_token:
        headers["Authorization"] = f"Bearer {settings.auth_token}"
    if settings.meta_host_header:
        headers["Host"] = settings.meta_host_header
    return Endpoint(settings.meta_graphql_url, headers, settings.timeout)


def tenant_endpoint(settings: Settings, database_id: str) -> Endpoint:
    """The endpoint of ``GetUser``: ``GRAPHQL_URL`` with ``X-Database-Id`` and friends."""
    assert settings.graphql_url is not None
    headers = {"X-Database-Id": database_id}
    if settings.auth_token:
        headers["Authorization"] = f"Bearer {settings.auth_token}"
    if settings.host_header:
        headers["Host"] = settings.host_header
    if settings.api_name:
        headers["X-Api-Name"] = settings.api_name
    if settings.schemata:
        headers["X-Schemata"] = settings.schemata
    return Endpoint(settings.graphql_url, headers, settings.timeout)


class _Transport(RequestsHTTPTransport):
    """The requests transport, but an HTTP error status is an error even with a JSON body."""

    def _prepare_result(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            detail = response.text.strip().replace("\n", " ")[:300]
            raise TransportServerError(
                f"HTTP {response.status_code}: {detail or response.reason}", response.status_code
            )
        return super()._prepare_result(response)


def _messages(errors: object) -> str:
    if isinstance(errors, list):
        texts = [
            str(item.get("message", item)) if isinstance(item, dict) else str(item)
            for item in errors
        ]
        return "; ".join(texts)
    return str(errors)


def execute(
    endpoint: Endpoint, request: GraphQLRequest, variables: dict[str, Any]
) -> dict[str, Any]:
    """Run one query; its ``data``.

    Raises :class:`UnavailableError` (retry) for timeouts, connection errors, 5xx/429 and GraphQL
    errors, and :class:`InvalidJobError` for other 4xx replies (wrong URL, Host or token).
    """
    name = request.operation_name
    transport = _Transport(
        url=endpoint.url,
        headers={
            **endpoint.headers,
            "Accept": "application/graphql-response+json, application/json",
        },
        timeout=endpoint.timeout,  # type: ignore[arg-type]
        retries=0,
    )
    client = Client(transport=transport, fetch_schema_from_transport=False)
    try:
        with client as session:
            result = session.execute(GraphQLRequest(request, variable_values=variables))
    except TransportServerError as exc:
        status = exc.code or 0
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise UnavailableError(f"GraphQL {name} at {endpoint.label} failed: {exc}") from None
        raise InvalidJobError(
            f"GraphQL {name} at {endpoint.label} was refused ({exc}); check the URL, the Host"
            " header and GRAPHQL_AUTH_TOKEN"
        ) from None
    except TransportQueryError as exc:
        raise UnavailableError(
            f"GraphQL {name} at {endpoint.label} returned errors: {_messages(exc.errors)}"
        ) from None
    except TransportConnectionFailed as exc:
        if isinstance(exc.__cause__, requests.Timeout):
            raise UnavailableError(
                f"GraphQL {name} at {endpoint.label} did not answer within {endpoint.timeout:g} s"
            ) from None
        reason = type(exc.__cause__).__name__ if exc.__cause__ else str(exc)
        raise UnavailableError(
            f"Could not reach GraphQL {name} at {endpoint.label}: {reason}"
        ) from None
    except TransportError as exc:
        raise UnavailableError(f"GraphQL {name} at {endpoint.label} failed: {exc}") from None
    if not isinstance(result, dict):
        raise UnavailableError(f"GraphQL {name} at {endpoint.label} answered without data")
    return result


def database_info(endpoint: Endpoint, database_id: str) -> dict[str, Any]:
    """The ``data`` of ``GetDatabaseInfo`` for ``database_id``."""
    return execute(endpoint, _GET_DATABASE_INFO, {"databaseId": database_id})


def user_display_name(endpoint: Endpoint, user_id: str) -> str | None:
    """The ``displayName`` of user ``user_id`` (``GetUser``), or ``None``."""
    data = execute(endpoint, _GET_USER, {"userId": user_id})
    nodes = (data.get("users") or {}).get("nodes") or []
    if not nodes or not isinstance(nodes[0], dict):
        return None
    name = nodes[0].get("displayName")
    return name if isinstance(name, str) and name.strip() else None
