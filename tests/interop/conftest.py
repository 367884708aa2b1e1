"""Fixtures of the interoperability tests: the reference Node packages, installed from npm.

``tests/interop/node/package.json`` (exact pins, plus the ``overrides`` the published packages
need to start, see ``tests/interop/README.md``) and its ``package-lock.json`` are installed with
``npm install --no-audit --no-fund`` into ``.cache/interop-node``. The install is reused while
the hash of those two files is unchanged. Where node/npm are missing or npm cannot install the
packages (registry unreachable), every test using :func:`reference_node_modules` is skipped
with the reason; nothing else skips them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(__file__).resolve().parent / "node"
CACHE_DIR = ROOT / ".cache" / "interop-node"
MANIFESTS = ("package.json", "package-lock.json")
HASH_FILE = ".manifest-sha256"
NPM_TIMEOUT = 75.0  # within the 120 s per-test timeout, with room for the test itself


def manifest_hash() -> str:
    """SHA-256 over the package manifests that decide what npm installs."""
    digest = hashlib.sha256()
    for name in MANIFESTS:
        digest.update(name.encode())
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()


def _installed(target: Path, wanted: str) -> bool:
    marker = target / HASH_FILE
    return (
        (target / "node_modules").is_dir()
        and marker.is_file()
        and marker.read_text().strip() == wanted
    )


def _npm_error(output: str) -> str:
    """The lines of npm's error output that say what went wrong (its head and its tail)."""
    lines = output.strip().splitlines()
    return "\n".join([*lines[:5], "...", *lines[-2:]] if len(lines) > 8 else lines)


def _npm_install(wanted: str) -> Path:
    """Install the manifests into a scratch dir, then move it into place as the cache."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.skip(
            "interop: node/npm not found on PATH; the reference packages cannot be installed"
        )
    scratch = CACHE_DIR.with_name(f"{CACHE_DIR.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for name in MANIFESTS:
        shutil.copyfile(PACKAGE_DIR / name, scratch / name)
    env = {
        **os.environ,
        "npm_config_update_notifier": "false",
        "npm_config_loglevel": "error",
        # An unreachable registry is given up on in about 20 s instead of npm's 70 s.
        "npm_config_fetch_retry_maxtimeout": "10000",
    }
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(scratch, ignore_errors=True)
        pytest.skip(f"interop: npm install did not finish within {NPM_TIMEOUT:.0f} s")
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        pytest.skip(
            f"interop: npm cannot install the reference packages (exit {done.returncode}):\n"
            + _npm_error(done.stderr or done.stdout)
        )
    (scratch / HASH_FILE).write_text(wanted + "\n")
    shutil.rmtree(CACHE_DIR, ignore_errors=True)
    scratch.rename(CACHE_DIR)
    return CACHE_DIR


@pytest.fixture(scope="session")
def reference_node_modules() -> Path:
    """``node_modules`` holding the reference packages (installed on first use, then reused)."""
    if shutil.which("node") is None:
        pytest.skip("interop: node not found on PATH; the reference packages cannot run")
    wanted = manifest_hash()
    target = CACHE_DIR if _installed(CACHE_DIR, wanted) else _npm_install(wanted)
    return target / "node_modules"
