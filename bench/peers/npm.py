"""Installs graphile-worker (pinned) into ``.cache/bench-peers/``, with a Node new enough for it.

graphile-worker 0.18 needs Node >= 22.18. When the machine's ``node`` is older (or missing),
the ``node`` package from the npm registry (which fetches the official binary for this
platform) is installed next to it. Needs ``npm`` on ``PATH``; the install runs once and is
kept (``.cache/bench-peers/graphile-worker-<version>/.installed``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench.harness import ROOT

GRAPHILE_VERSION = "0.18.0"
NODE_PACKAGE = "node@22.23.3"
NODE_MINIMUM = (22, 18, 0)
SCRIPT = Path(__file__).with_name("graphile_worker.mjs")


@dataclass(frozen=True)
class NodeInstall:
    """Where the peer runs from."""

    folder: Path
    node: Path
    script: Path


def node_version(node: str) -> tuple[int, int, int] | None:
    """``node --version`` as a tuple, or ``None`` when it does not run."""
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


@cache
def install_graphile() -> NodeInstall:
    """Install (once) and return graphile-worker with a suitable Node."""
    folder = ROOT / ".cache" / "bench-peers" / f"graphile-worker-{GRAPHILE_VERSION}"
    marker = folder / ".installed"
    system_node = shutil.which("node")
    system_ok = system_node is not None and (node_version(system_node) or (0,)) >= NODE_MINIMUM
    if not marker.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("graphile-worker needs npm on PATH to be installed")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(
            json.dumps({"private": True, "type": "module"}), encoding="utf-8"
        )
        packages = [f"graphile-worker@{GRAPHILE_VERSION}"]
        if not system_ok:
            packages.append(NODE_PACKAGE)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--save-exact", *packages],
            cwd=folder,
            check=True,
            timeout=600,
            capture_output=True,
        )
        marker.write_text("\n".join(packages), encoding="utf-8")
    local_node = folder / "node_modules" / ".bin" / "node"
    if local_node.exists():
        node = local_node
    elif system_ok and system_node is not None:
        node = Path(system_node)
    else:
        raise RuntimeError(f"no Node >= 22.18 for graphile-worker (remove {marker} to retry)")
    # ESM resolves "graphile-worker" from the script's folder: run a copy placed there.
    script = folder / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    return NodeInstall(folder, node, script)
