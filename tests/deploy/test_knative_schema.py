"""The Knative Services validate against Knative Serving's Service schema (vendored).

The schema uses a small part of JSON Schema (type, properties, additionalProperties, items,
required, anyOf, pattern); ``violations`` checks exactly that part, so a misspelt or misplaced
field, or a value of the wrong type, fails here rather than at ``kubectl apply``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "schemas/knative-serving-service-v1.json").read_text())
SERVICES = sorted(ROOT.glob("functions/*/knative/service.yaml"))
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def violations(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every place where ``value`` breaks ``schema`` (empty: valid)."""
    options = schema.get("anyOf", [])
    if options and all(violations(value, option, path) for option in options):
        return [f"{path}: matches none of {options}"]
    expected = schema.get("type")
    if expected is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, TYPES[expected]) or (is_bool and expected != "boolean"):
            return [f"{path}: expected {expected}, got {value!r}"]
    found: list[str] = []
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [
            f"{path}: missing {key}" for key in schema.get("required", []) if key not in value
        ]
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += violations(item, properties[key], f"{path}.{key}")
            elif extra is False:
                found.append(f"{path}: unknown field {key}")
            elif isinstance(extra, dict):
                found += violations(item, extra, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += violations(item, schema["items"], f"{path}[{index}]")
    return found


def test_the_checker_catches_what_kubectl_would_refuse() -> None:
    [path] = [p for p in SERVICES if p.parent.parent.name == "simple-email"]
    doc = yaml.safe_load(path.read_text())
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["paht"] = "/typo"
    container["ports"][0]["containerPort"] = "8080"

    found = violations(doc, SCHEMA)

    assert any("unknown field paht" in item for item in found), found
    assert any("containerPort: expected integer" in item for item in found), found


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.parent.parent.name)
def test_knative_service_matches_the_schema(path: Path) -> None:
    assert len(SERVICES) == 2
    assert violations(yaml.safe_load(path.read_text()), SCHEMA) == []
