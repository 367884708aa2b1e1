"""The benchmark package (``bench/`` at the project root) is importable by these tests.

It is not an installed package: ``python -m bench`` runs it from the project root, and pytest
would otherwise find this folder under the name ``bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
