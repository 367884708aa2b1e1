"""``jobs-dev``: run the local stack."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs-dev``."""
    print("jobs-dev: not built yet", file=sys.stderr)
    return 2
