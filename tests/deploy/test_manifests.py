"""Every Kubernetes manifest loads and follows the deployment rules."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from jobfn import JobFunction
from jobfn.security import SecretError, check_secret
from send_verification_link import send_verification_link
from simple_email import simple_email

if TYPE_CHECKING:
    from tests.deploy.conftest import Manifest

FUNCTION_OBJECTS: dict[str, JobFunction] = {
    "simple-email": simple_email,
    "send-verification-link": send_verification_link,
}


def one(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    found = [m.doc for m in manifests if m.kind == kind and m.name == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def knative_services(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m.kind == "Service" and "knative" in m.doc["apiVersion"]]


def test_every_manifest_has_kind_name_and_the_jobs_namespace(manifests: list[Manifest]) -> None:
    assert len(manifests) >= 8
    for item in manifests:
        assert item.doc.get("apiVersion"), item.path
        if item.kind != "Namespace":
            assert item.namespace == "jobs", f"{item.path}: {item.kind} {item.name}"


def test_one_cluster_local_knative_service_per_function(manifests: list[Manifest]) -> None:
    services = {m.name: m for m in knative_services(manifests)}

    assert set(services) == {"simple-email", "send-verification-link"}
    for name, item in services.items():
        assert item.path.parent.parent.name == name
        assert item.doc["apiVersion"] == "serving.knative.dev/v1"
        labels = item.doc["metadata"]["labels"]
        assert labels["networking.knative.dev/visibility"] == "cluster-local"


@pytest.mark.parametrize("function", ["simple-email", "send-verification-link"])
def test_knative_service_follows_the_runtime_contract(
    manifests: list[Manifest], function: str
) -> None:
    spec = one(manifests, "Service", function)["spec"]["template"]["spec"]
    [container] = spec["containers"]

    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert "PORT" not in {item["name"] for item in container.get("env", [])}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    assert isinstance(spec["containerConcurrency"], int)
    assert spec["containerConcurrency"] > 0
    assert isinstance(spec["timeoutSeconds"], int)
    handler_timeout = FUNCTION_OBJECTS[function].timeout
    assert handler_timeout is not None
    assert spec["timeoutSeconds"] >= handler_timeout
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"]


def test_every_referenced_secret_and_config_key_exists(manifests: list[Manifest]) -> None:
    data: dict[tuple[str, str], set[str]] = {}
    for item in manifests:
        if item.kind in ("Secret", "ConfigMap"):
            keys = {**item.doc.get("data", {}), **item.doc.get("stringData", {})}
            data[(item.kind, item.name)] = set(keys)

    def check(node: Any) -> None:
        if isinstance(node, dict):
            for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if ref in node:
                    target = node[ref]
                    if target.get("optional") is True:
                        assert (kind, target["name"]) in data, target
                    else:
                        assert target["key"] in data[(kind, target["name"])], target
            for kind, ref in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if ref in node:
                    assert (kind, node[ref]["name"]) in data, node[ref]
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for value in node:
                check(value)

    for item in manifests:
        check(item.doc)


def test_config_maps_hold_no_secrets(manifests: list[Manifest]) -> None:
    for item in manifests:
        if item.kind == "ConfigMap":
            for key in item.doc["data"]:
                assert not any(
                    word in key for word in ("PASSWORD", "SECRET", "API_KEY", "TOKEN")
                ), f"{item.name}: {key} belongs in a Secret"


def test_job_service_is_safe_with_several_replicas(manifests: list[Manifest]) -> None:
    deployment = one(manifests, "Deployment", "jobs")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {item["name"]: item for item in container["env"]}

    assert deployment["spec"]["replicas"] >= 2
    assert env["HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert {ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref}
    assert {ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref}
    assert container["args"] == ["jobs", "worker"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
    config = one(manifests, "ConfigMap", "jobs-config")["data"]
    assert pod["terminationGracePeriodSeconds"] > int(config["JOBS_SHUTDOWN_GRACE"])
    budget = one(manifests, "PodDisruptionBudget", "jobs")
    assert (
        budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )


def test_callback_service_reaches_the_job_service_pods(manifests: list[Manifest]) -> None:
    deployment = one(manifests, "Deployment", "jobs")
    service = one(manifests, "Service", "jobs-callback")
    config = one(manifests, "ConfigMap", "jobs-config")["data"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = service["spec"]["ports"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert port["port"] == int(config["INTERNAL_JOBS_CALLBACK_PORT"])
    callback = urlsplit(config["INTERNAL_JOBS_CALLBACK_URL"])
    assert callback.hostname == "jobs-callback.jobs.svc.cluster.local"
    assert callback.port == port["port"]


def test_every_task_routes_to_its_knative_service(manifests: list[Manifest]) -> None:
    config = one(manifests, "ConfigMap", "jobs-config")["data"]
    routes = json.loads(config["INTERNAL_GATEWAY_DEVELOPMENT_MAP"])
    services = {m.name: m for m in knative_services(manifests)}

    assert set(routes) == {fn.name for fn in FUNCTION_OBJECTS.values()}
    for folder, fn in FUNCTION_OBJECTS.items():
        host = urlsplit(routes[fn.name]).hostname
        assert host == f"{folder}.{services[folder].namespace}.svc.cluster.local"
    for item in knative_services(manifests):
        assert item.doc["spec"]["template"]["spec"]["timeoutSeconds"] <= int(
            config["JOBS_REQUEST_TIMEOUT"]
        )


def test_migration_job_runs_jobs_migrate_with_the_service_configuration(
    manifests: list[Manifest],
) -> None:
    job = one(manifests, "Job", "jobs-migrate")
    [container] = job["spec"]["template"]["spec"]["containers"]
    deployment = one(manifests, "Deployment", "jobs")
    [service_container] = deployment["spec"]["template"]["spec"]["containers"]

    assert container["args"] == ["jobs", "migrate"]
    assert container["image"] == service_container["image"]
    assert container["envFrom"] == service_container["envFrom"]


def test_the_signing_secret_reaches_the_job_service_and_every_function(
    manifests: list[Manifest],
) -> None:
    secret = one(manifests, "Secret", "jobs-secrets")["stringData"]
    deployment = one(manifests, "Deployment", "jobs")
    [container] = deployment["spec"]["template"]["spec"]["containers"]

    assert "JOBS_SIGNING_SECRET" in secret
    assert {"secretRef": {"name": "jobs-secrets"}} in container["envFrom"]
    for item in knative_services(manifests):
        [function] = item.doc["spec"]["template"]["spec"]["containers"]
        env = {entry["name"]: entry for entry in function["env"]}
        ref = env["JOBS_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("jobs-secrets", "JOBS_SIGNING_SECRET"), item.name
        previous = env["JOBS_SIGNING_SECRET_PREVIOUS"]["valueFrom"]["secretKeyRef"]
        assert previous["optional"] is True
        assert "JOBS_INSECURE_CALLBACKS" not in env, item.name


def test_the_shipped_secrets_are_placeholders_that_are_refused(manifests: list[Manifest]) -> None:
    for name in ("jobs-secrets", "email-secrets"):
        for key, value in one(manifests, "Secret", name)["stringData"].items():
            assert value.startswith("change-me"), f"{name}.{key} must be a placeholder"
    placeholder = one(manifests, "Secret", "jobs-secrets")["stringData"]["JOBS_SIGNING_SECRET"]

    with pytest.raises(SecretError, match="JOBS_SIGNING_SECRET"):
        check_secret("JOBS_SIGNING_SECRET", placeholder)
