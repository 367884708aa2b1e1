"""docker/init-secrets.sh: the compose stack's secrets, made with no setup (run for real)."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker/init-secrets.sh"


def run(directory: Path, **env: str) -> str:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("JOBS_SIGNING_SECRET", "JOBS_API_TOKEN")
    }
    result = subprocess.run(
        ["sh", str(SCRIPT), str(directory)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def test_generates_long_random_secrets_readable_by_the_owner_only(tmp_path: Path) -> None:
    out = run(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    run(other)

    for name in ("signing-secret", "api-token"):
        value = (tmp_path / name).read_text()
        assert len(base64.urlsafe_b64decode(value + "==")) == 48
        assert not value.startswith("change-me")
        assert value != (other / name).read_text()
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
        assert f"{tmp_path / name} generated" in out
    assert (tmp_path / "signing-secret").read_text() != (tmp_path / "api-token").read_text()


def test_keeps_the_secrets_across_restarts(tmp_path: Path) -> None:
    run(tmp_path)
    first = (tmp_path / "signing-secret").read_text()

    out = run(tmp_path)

    assert (tmp_path / "signing-secret").read_text() == first
    assert "kept" in out


def test_the_variables_override_the_files(tmp_path: Path) -> None:
    run(tmp_path)
    chosen = "a-signing-secret-chosen-by-the-user-0123456789"

    out = run(tmp_path, JOBS_SIGNING_SECRET=chosen, JOBS_API_TOKEN="token-chosen-by-the-user")

    assert (tmp_path / "signing-secret").read_text() == chosen
    assert (tmp_path / "api-token").read_text() == "token-chosen-by-the-user"
    assert "from JOBS_SIGNING_SECRET" in out
    assert not list(tmp_path.glob("*.tmp"))
