"""The two ways a verification-link job fails."""

from __future__ import annotations


class InvalidJobError(Exception):
    """Another attempt cannot help: a missing field, missing site configuration, a bad link."""


class UnavailableError(Exception):
    """The GraphQL API failed or did not answer in time: the job is retried."""
