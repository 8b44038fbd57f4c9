"""The pieces every Atelier manifest is made of: labels, the app's container, a Deployment, a
PodDisruptionBudget (scripts/k8s_manifests.py renders them)."""

from __future__ import annotations

from typing import Any

# The ConfigMap of plain settings every process reads (the Secret holds the rest).
ENV_CONFIG = "atelier-env"


def labels(values: dict[str, Any], component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "atelier",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/version": str(values["release"]),
    }


def selector(component: str) -> dict[str, str]:
    """What a Deployment's pods are found by: fixed across releases (selectors are immutable)."""
    return {"app.kubernetes.io/name": "atelier", "app.kubernetes.io/component": component}


def metadata(name: str, values: dict[str, Any], component: str) -> dict[str, Any]:
    return {"name": name, "namespace": values["namespace"], "labels": labels(values, component)}


def container(
    name: str,
    values: dict[str, Any],
    command: list[str],
    *,
    env: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The app's image with the shared settings (ConfigMap) and secrets (Secret) as environment."""
    spec: dict[str, Any] = {
        "name": name,
        "image": values["image"],
        "command": command,
        "envFrom": [{"configMapRef": {"name": ENV_CONFIG}}, {"secretRef": {"name": values["secret"]}}],
    }
    if env:
        spec["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if resources:
        spec["resources"] = resources
    return spec


def deployment(
    name: str,
    component: str,
    values: dict[str, Any],
    containers: list[dict[str, Any]],
    *,
    replicas: int | None,
    pod: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(component)},
        "template": {
            "metadata": {"labels": labels(values, component)},
            "spec": {"containers": containers, **(pod or {})},
        },
    }
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(name, values, component),
        "spec": spec,
    }


def pdb(
    name: str, component: str, values: dict[str, Any], *, min_available: int = 0, max_unavailable: int = 0
) -> dict[str, Any]:
    """Voluntary evictions (node drains, upgrades) keep `min_available` pods, or take at most
    `max_unavailable` at once."""
    budget: dict[str, Any] = {"selector": {"matchLabels": selector(component)}}
    if max_unavailable:
        budget["maxUnavailable"] = max_unavailable
    else:
        budget["minAvailable"] = min_available
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, values, component),
        "spec": budget,
    }


def heartbeat_probes(alive: list[str], *, startup_seconds: int) -> dict[str, Any]:
    """Liveness for a process that beats in Redis instead of answering HTTP: `manage.py alive`
    fails when this pod's heartbeat is stale or missing. The startup probe gives the process
    `startup_seconds` for its first beat (a worker loads its models first)."""
    command = {"exec": {"command": ["python", "manage.py", "alive", *alive]}, "timeoutSeconds": 20}
    return {
        "startupProbe": {**command, "periodSeconds": 10, "failureThreshold": max(1, startup_seconds // 10)},
        "livenessProbe": {**command, "periodSeconds": 30, "failureThreshold": 3},
    }
