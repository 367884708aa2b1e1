"""Loading the deployment files: Kubernetes manifests, the compose file and Dockerfiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("simple-email", "send-verification-link")


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and the file it came from."""

    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        value = self.doc["metadata"].get("namespace")
        return None if value is None else str(value)


def load_manifests() -> list[Manifest]:
    files = sorted((ROOT / "deploy").glob("*.yaml")) + sorted(
        (ROOT / "functions").glob("*/knative/*.yaml")
    )
    manifests = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                manifests.append(Manifest(path, doc))
    return manifests


@pytest.fixture(scope="module")
def manifests() -> list[Manifest]:
    """Every object in ``deploy/*.yaml`` and ``functions/*/knative/*.yaml``."""
    return load_manifests()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """``docker-compose.jobs.yml``, parsed."""
    data = yaml.safe_load((ROOT / "docker-compose.jobs.yml").read_text())
    assert isinstance(data, dict)
    return data
