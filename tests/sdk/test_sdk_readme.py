"""The README's opening example runs as written and is (about) ten lines."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jobfn import JobFunction
from jobfn.testing import invoke

README = Path(__file__).resolve().parents[2] / "sdk" / "README.md"


def test_opening_example_is_ten_lines_and_works() -> None:
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert first is not None
    assert text.index(first.group(0)) < 100  # it opens the README
    code = first.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)
    send_email = namespace["send_email"]
    assert isinstance(send_email, JobFunction)
    run = invoke(send_email, {"to": "ada@example.com"})
    assert run.status == 200
    assert run.result == {"sent_to": "ada@example.com"}
    assert invoke(send_email, {}).status == 422
