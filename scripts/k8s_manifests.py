"""Atelier's Kubernetes manifests, rendered from a values file (deploy/k8s/values.yaml).

    python scripts/k8s_manifests.py --values deploy/k8s/values.yaml > atelier.yaml

Neither Helm nor kustomize is in Debian's packages, so the chart is this renderer: plain Python
building plain manifests, one values file per environment. The web tier, WebSockets, the
dispatcher, the proxy (deploy/nginx/atelier.conf as a ConfigMap) and migrations are here; the GPU
workers and their KEDA scaling in scripts/k8s_workers.py, the pieces both use in
scripts/k8s_objects.py. docs/deploy.md explains each part.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):  # run as a file: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.k8s_objects import ENV_CONFIG, container, deployment, heartbeat_probes, metadata, pdb
from scripts.k8s_workers import pool_timeouts, worker_manifests

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VALUES = ROOT / "deploy" / "k8s" / "values.yaml"
PROXY_CONF = ROOT / "deploy" / "nginx" / "atelier.conf"
WEB_PORT, WS_PORT = 8000, 8001
STATIC_ROOT = "/srv/static"
# The Ingress controller and the proxy both append to X-Forwarded-For before gunicorn; only the
# controller before daphne on /ws/ (core/client.py counts from the right).
WEB_TRUSTED_PROXIES, WS_TRUSTED_PROXIES = "2", "1"

Manifest = dict[str, Any]


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of values")
    check_pools(values)
    return values


def configured_pools(values: dict[str, Any]) -> set[str]:
    """The pools named by the values' ATELIER_MODELS (the built-in model's `tiny` when unset)."""
    text = str(values.get("env", {}).get("ATELIER_MODELS", "")).strip()
    if not text:
        return {"tiny"}
    if text.startswith("["):
        return {str(item.get("pool", "sd15")) for item in json.loads(text)}
    return {part.split("=", 2)[2] if part.count("=") >= 2 else "sd15" for part in text.split(",")}


def check_pools(values: dict[str, Any]) -> None:
    # A pool whose models are added with `manage.py models add` says so (`added_models: true`).
    declared = {str(pool["name"]) for pool in values["pools"] if not pool.get("added_models")}
    missing = sorted(declared - configured_pools(values))
    if missing:
        raise ValueError(
            f"pools {missing} have no model in env.ATELIER_MODELS: their workers could not start"
        )


def probe(path: str, port: int, values: dict[str, Any], period: int) -> dict[str, Any]:
    """An HTTP probe asked the way the proxy asks (an allowed Host, https), as scripts/readyz.py
    does: without those headers the production settings answer 400 or a redirect, not the check."""
    headers = [{"name": "Host", "value": values["host"]}, {"name": "X-Forwarded-Proto", "value": "https"}]
    return {
        "httpGet": {"path": path, "port": port, "httpHeaders": headers},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def probes(port: int, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "readinessProbe": probe("/readyz", port, values, 10),
        "livenessProbe": probe("/healthz", port, values, 20),
        "startupProbe": {**probe("/healthz", port, values, 5), "failureThreshold": 24},
    }


def collect_static(values: dict[str, Any]) -> dict[str, Any]:
    """`collectstatic` into the pod's own STATIC_ROOT: the proxy serves the files, and gunicorn
    needs the manifest of hashed names (ATELIER_HASHED_STATIC=1) to write links to them. The same
    release collects the same names in every pod."""
    collect = container(
        "collectstatic",
        values,
        ["python", "manage.py", "collectstatic", "--no-input", "-v", "0"],
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    )
    collect["volumeMounts"] = [{"name": "static", "mountPath": STATIC_ROOT}]
    return collect


def web(values: dict[str, Any]) -> list[Manifest]:
    settings = values["web"]
    main = container(
        "web",
        values,
        ["gunicorn", "-c", "config/gunicorn.py"],
        env={
            "WEB_BIND": f"0.0.0.0:{WEB_PORT}",
            "ATELIER_TRUSTED_PROXIES": WEB_TRUSTED_PROXIES,
            # Fixed threads: one persistent connection each instead of a pool (config/settings.py).
            "DATABASE_POOL_MAX": "0",
            "DATABASE_CONN_MAX_AGE": "600",
        },
        resources=settings["resources"],
    )
    main.update(ports=[{"name": "http", "containerPort": WEB_PORT}], **probes(WEB_PORT, values))
    main["volumeMounts"] = [{"name": "static", "mountPath": STATIC_ROOT, "readOnly": True}]
    pod = {"initContainers": [collect_static(values)], "volumes": [{"name": "static", "emptyDir": {}}]}
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata("atelier-web", values, "web"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "atelier-web"},
            "minReplicas": settings["min_replicas"],
            "maxReplicas": settings["max_replicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": settings["cpu_utilization"]},
                    },
                }
            ],
        },
    }
    # No `replicas`: the HPA owns the count, and applying the manifest again must not reset it.
    return [
        deployment("atelier-web", "web", values, [main], replicas=None, pod=pod),
        service("atelier-web", "web", values, WEB_PORT),
        hpa,
        pdb("atelier-web", "web", values, min_available=1),
    ]


def ws(values: dict[str, Any]) -> list[Manifest]:
    main = container(
        "ws",
        values,
        ["daphne", "-b", "0.0.0.0", "-p", str(WS_PORT), "config.asgi:application"],  # noqa: S104 - a pod
        env={"ATELIER_TRUSTED_PROXIES": WS_TRUSTED_PROXIES},
        resources=values["ws"]["resources"],
    )
    main.update(ports=[{"name": "http", "containerPort": WS_PORT}], **probes(WS_PORT, values))
    return [
        deployment("atelier-ws", "ws", values, [main], replicas=values["ws"]["replicas"]),
        service("atelier-ws", "ws", values, WS_PORT),
        pdb("atelier-ws", "ws", values, min_available=1),
    ]


def dispatcher(values: dict[str, Any]) -> list[Manifest]:
    """One replica, replaced rather than rolled (two at once are safe, one is enough): its loop
    keeps no state outside the database and Redis, so a restart costs one tick."""
    main = container(
        "dispatcher",
        values,
        ["python", "manage.py", "dispatcher"],
        resources=values["dispatcher"]["resources"],
    )
    main.update(heartbeat_probes(["--dispatcher"], startup_seconds=120))
    manifest = deployment("atelier-dispatcher", "dispatcher", values, [main], replicas=1)
    manifest["spec"]["strategy"] = {"type": "Recreate"}
    return [manifest]


def proxy(values: dict[str, Any]) -> list[Manifest]:
    """nginx with deploy/nginx/atelier.conf as shipped (from a ConfigMap, filled in by the proxy
    image's entrypoint), serving the static files an init container collects."""
    static = {"name": "static", "mountPath": STATIC_ROOT}
    nginx = {
        "name": "nginx",
        "image": values["proxy_image"],
        "env": [
            {"name": name, "value": value}
            for name, value in {
                "ATELIER_WEB_SERVERS": f"server atelier-web:{WEB_PORT};",
                "ATELIER_WS_SERVERS": f"server atelier-ws:{WS_PORT};",
                "ATELIER_HTTP_PORT": "8080",
                "ATELIER_HTTPS_PORT": "8443",
                "ATELIER_TLS_CERTIFICATE": "/etc/nginx/tls/tls.crt",
                "ATELIER_TLS_KEY": "/etc/nginx/tls/tls.key",
                "ATELIER_STATIC_ROOT": STATIC_ROOT,
                "ATELIER_PROXY_CACHE": "/var/cache/nginx/atelier",
                "ATELIER_REQUEST_MAX_BYTES": str(values["env"].get("ATELIER_REQUEST_MAX_BYTES", "22020096")),
            }.items()
        ],
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "https", "containerPort": 8443}],
        "volumeMounts": [
            {**static, "readOnly": True},
            {"name": "conf", "mountPath": "/etc/nginx/templates", "readOnly": True},
            {"name": "tls", "mountPath": "/etc/nginx/tls", "readOnly": True},
            {"name": "cache", "mountPath": "/var/cache/nginx/atelier"},
        ],
        "readinessProbe": {"httpGet": {"path": "/proxy-health", "port": 8080}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/proxy-health", "port": 8080}, "periodSeconds": 20},
        "resources": values["proxy"]["resources"],
    }
    manifest = deployment("atelier-proxy", "proxy", values, [nginx], replicas=values["proxy"]["replicas"])
    pod = manifest["spec"]["template"]["spec"]
    pod["initContainers"] = [collect_static(values)]
    pod["volumes"] = [
        {"name": "static", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "conf", "configMap": {"name": "atelier-proxy"}},
        {"name": "tls", "secret": {"secretName": values["tls_secret"]}},
    ]
    conf = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("atelier-proxy", values, "proxy"),
        "data": {"atelier.conf": PROXY_CONF.read_text()},
    }
    svc = service("atelier-proxy", "proxy", values, 8443, port_name="https")
    svc["spec"]["ports"].insert(0, {"name": "http", "port": 8080, "targetPort": 8080})
    return [conf, manifest, svc, pdb("atelier-proxy", "proxy", values, min_available=1)]


def service(
    name: str, component: str, values: dict[str, Any], port: int, *, port_name: str = "http"
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, values, component),
        "spec": {
            "selector": {"app.kubernetes.io/name": "atelier", "app.kubernetes.io/component": component},
            "ports": [{"name": port_name, "port": port, "targetPort": port}],
        },
    }


def ingress(values: dict[str, Any]) -> Manifest:
    """TLS ends here; /ws/ (the app's events socket) and ComfyUI's /ws and /api/ws go straight to
    daphne, the rest to the proxy's TLS port (static files, image cache, body limit, and sockets
    under /comfy/<key>/, which the proxy sends to daphne by their Upgrade header)."""

    def path(prefix: str, kind: str, target: str, port: int) -> dict[str, Any]:
        return {
            "path": prefix,
            "pathType": kind,
            "backend": {"service": {"name": target, "port": {"number": port}}},
        }

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **metadata("atelier", values, "ingress"),
            "annotations": {
                # ingress-nginx: HTTPS to the proxy, so it passes X-Forwarded-Proto: https on.
                "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
                "nginx.ingress.kubernetes.io/proxy-body-size": str(
                    values["env"].get("ATELIER_REQUEST_MAX_BYTES", "22020096")
                ),
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
            },
        },
        "spec": {
            "ingressClassName": values["ingress_class"],
            "tls": [{"hosts": [values["host"]], "secretName": values["tls_secret"]}],
            "rules": [
                {
                    "host": values["host"],
                    "http": {
                        "paths": [
                            path("/ws/", "Prefix", "atelier-ws", WS_PORT),
                            path("/ws", "Exact", "atelier-ws", WS_PORT),
                            path("/api/ws", "Exact", "atelier-ws", WS_PORT),
                            path("/", "Prefix", "atelier-proxy", 8443),
                        ]
                    },
                }
            ],
        },
    }


def migrate_job(values: dict[str, Any]) -> Manifest:
    """`migrate` once per release, before the new web pods: Jobs are immutable, so the release
    names it; finished ones are cleaned up after a day."""
    main = container("migrate", values, ["python", "manage.py", "migrate", "--no-input"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(f"atelier-migrate-{values['release']}".replace(".", "-"), values, "migrate"),
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": metadata("", values, "migrate")["labels"]},
                "spec": {"restartPolicy": "Never", "containers": [main]},
            },
        },
    }


def env_config(values: dict[str, Any]) -> Manifest:
    env = {
        "DJANGO_DEBUG": "0",
        "MEDIA_ROOT": "/data/media",
        "ATELIER_DATA_DIR": "/data",
        "STATIC_ROOT": STATIC_ROOT,
    }
    env.update({key: str(value) for key, value in values["env"].items()})
    env["ATELIER_POOL_TIMEOUTS"] = pool_timeouts(values)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(ENV_CONFIG, values, "config"),
        "data": env,
    }


def render(values: dict[str, Any]) -> list[Manifest]:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": values["namespace"]}}
    manifests = [namespace, env_config(values), migrate_job(values)]
    for part in (web, ws, dispatcher, proxy):
        manifests.extend(part(values))
    manifests.append(ingress(values))
    manifests.extend(worker_manifests(values))
    return manifests


def dump(manifests: list[Manifest]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--values", type=Path, default=DEFAULT_VALUES)
    options = parser.parse_args(argv)
    sys.stdout.write(dump(render(load_values(options.values))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
