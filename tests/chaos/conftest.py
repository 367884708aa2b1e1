"""Options of the chaos tests: ``--chaos-long`` (or ``JOBS_CHAOS_LONG=1``) runs the long form."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-long",
        action="store_true",
        default=False,
        help="run the long chaos form (10,000 jobs, a 60 s database outage)",
    )
